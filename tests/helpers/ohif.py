"""Drive OHIF in headless Chromium (Debian's browser through Playwright, no browser download).

Why a browser test: OHIF is where a radiologist meets the node's SR. The only proof that the
report is usable is OHIF drawing our ROI and label on the image, so the test opens the study,
loads our SR the way a person does (double-click its thumbnail) and reads the label; where
the drawing is checked, it is measured against OHIF's own image-to-screen transform.
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


LAUNCH_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
#: Software WebGL on 2 shared cores: loading an SR and its images took over 60 s once in a CI
#: rehearsal, and a finder run beside it slows it further.
LOAD_TIMEOUT_MS = 300_000


@contextmanager
def browser_page() -> Iterator:
    """A headless Chromium page (1600 x 1000), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser.new_page(viewport={"width": 1600, "height": 1000})
        finally:
            browser.close()


def open_study(page, viewer_url: str, study_uid: str, series_description: str) -> None:
    """Open the study and wait for ``series_description``'s thumbnail; dismiss the tour."""
    page.goto(f"{viewer_url}/viewer?StudyInstanceUIDs={study_uid}")
    page.get_by_text(series_description).first.wait_for(timeout=LOAD_TIMEOUT_MS)
    dismiss_popups(page)


def dismiss_popups(page) -> None:
    """Close OHIF's first-visit tour and its investigational-use banner, which appear a moment
    after the study and would otherwise cover the image in a screenshot."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for label in ("Skip all", "Confirm and hide"):
        with suppress(PlaywrightTimeout):
            page.get_by_text(label).first.click(timeout=15_000)


def load_series(page, series_description: str) -> None:
    """Load a series into the viewport the way a person does: double-click its thumbnail."""
    page.get_by_text(series_description).first.dblclick()


def image_to_screen(page, col: float, row: float) -> tuple[float, float]:
    """Where OHIF shows the source pixel (row, col) of the active image, in page pixels: the
    viewport's own image-to-canvas transform (cornerstone3D), not our annotations."""
    x, y = page.evaluate(
        """([x, y]) => {
          const cs = window.cornerstone;
          const vp = cs.getEnabledElements()[0].viewport;
          const world = cs.utilities.imageToWorldCoords(vp.getCurrentImageId(), [x, y]);
          const c = vp.worldToCanvas(world);
          const r = vp.canvas.getBoundingClientRect();
          return [r.left + c[0], r.top + c[1]];
        }""",
        [col + 0.5, row + 0.5],
    )
    return float(x), float(y)


def drawn_outlines(page) -> list[tuple[float, float, float, float]]:
    """The (x, y, width, height) page boxes of the outlines OHIF drew over the image."""
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('svg.svg-layer polyline')].map(e => {
             const b = e.getBoundingClientRect();
             return [b.x, b.y, b.width, b.height];
           })"""
    )
    return [tuple(float(v) for v in b) for b in boxes]


def coloured_pixels(png: Path, box: tuple[float, float, float, float]) -> list[tuple[int, int]]:
    """(x, y) of the saturated pixels of a screenshot inside ``box``: a mammogram is grey, so
    inside the canvas these are what a viewer paints over it."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    x, y, w, h = (int(round(v)) for v in box)
    area = rgb[y : y + h, x : x + w]
    spread = area.max(axis=2) - area.min(axis=2)
    ys, xs = np.nonzero(spread > 80)
    return [(int(a) + x, int(b) + y) for a, b in zip(xs, ys, strict=True)]


def show_sr_in_ohif(
    viewer_url: str, study_uid: str, sr_series_description: str, screenshot: Path
) -> str:
    """Open the study, load the SR by its series description; return the page's text."""
    with browser_page() as page:
        open_study(page, viewer_url, study_uid, sr_series_description[:20])
        load_series(page, sr_series_description[:20])
        page.get_by_text("Probability of cancer").first.wait_for(timeout=LOAD_TIMEOUT_MS)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
        return page.inner_text("body")
