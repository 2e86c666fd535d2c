"""benchmarks/ingest.py's runs: each server stores every image it timed, and the
'no-fsync' kind really is our SCP without fsync (the comparison that prices durability)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import ingest

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="needs dcmtk")


@pytest.mark.parametrize("kind", ["ours", "no-fsync", "dcmtk"])
def test_a_run_stores_every_image_and_reports_a_rate(tmp_path: Path, kind: str) -> None:
    files = ingest.make_images(tmp_path / "images", 2, 0.5)
    mbps, cpu_ms = ingest.run_once(kind, files, 2, tmp_path, processes=1)
    assert mbps > 0 and cpu_ms >= 0  # run_once raises when an image is missing


def test_no_fsync_starts_our_scp_with_fsync_off(tmp_path: Path) -> None:
    port = ingest.free_port()
    proc = ingest.start_ours(tmp_path, port, processes=1, fsync=False)
    try:
        ingest.wait_listening(port, proc)  # exec'd: before that /proc shows the parent's env
        env = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert b"SGC_FSYNC=false" in env
    finally:
        proc.kill()
        proc.wait()
