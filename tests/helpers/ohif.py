"""Drive OHIF in headless Chromium (Debian's browser through Playwright, no browser download).

Why a browser test: OHIF is where a radiologist meets the node's SR. The only proof that the
report is usable is OHIF drawing our ROI and label on the image, so the test opens the study,
loads our SR the way a person does (double-click its thumbnail) and reads the label.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from sgc_node.viewer import make_server
from tests.helpers.services import free_port

ROOT = Path(__file__).resolve().parents[2]
VIEWER = ROOT / "viewer"
ARTIFACTS = ROOT / "artifacts"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `make deps` (browser tests need it)")
    return path


@contextmanager
def ohif_viewer(orthanc_url: str) -> Iterator[str]:
    """Serve OHIF + the same-origin DICOMweb proxy on a free loopback port; yield its URL."""
    if not (VIEWER / "dist" / "index.html").exists():
        pytest.fail("OHIF is not fetched: run `make viewer-dist` (viewer/fetch-ohif.sh)")
    server = make_server(VIEWER / "dist", VIEWER / "app-config.js", orthanc_url, port=free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def show_sr_in_ohif(
    viewer_url: str, study_uid: str, sr_series_description: str, screenshot: Path
) -> str:
    """Open the study, load the SR by its series description; return the page's text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={study_uid}")
            thumb = page.get_by_text(sr_series_description[:20]).first
            thumb.wait_for(timeout=60_000)
            # The first-visit tour and the investigational-use banner appear a moment later.
            for label in ("Skip all", "Confirm and hide"):
                with suppress(PlaywrightTimeout):
                    page.get_by_text(label).first.click(timeout=15_000)
            thumb.dblclick()
            # Software WebGL on 2 cores: with the other core busy, loading the SR and its
            # images took over 60 s once in a CI rehearsal.
            page.get_by_text("Probability of cancer").first.wait_for(timeout=150_000)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
            return page.inner_text("body")
        finally:
            browser.close()
