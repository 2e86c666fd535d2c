"""benchmarks/ingest.py's runs: each server stores every image it timed, the 'no-fsync'
kind really is our SCP without fsync (the comparison that prices durability), and the
'dcmtk-sync' kind's clock includes a sync."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import ingest

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="needs dcmtk")


@pytest.mark.parametrize("kind", ["ours", "no-fsync", "dcmtk", "dcmtk-sync"])
def test_a_run_stores_every_image_and_reports_a_rate(tmp_path: Path, kind: str) -> None:
    files = ingest.make_images(tmp_path / "images", 2, 0.5)
    run = ingest.run_once(kind, files, 2, tmp_path, processes=1)
    assert run.mbps > 0 and run.cpu >= 0  # run_once raises when an image is missing
    assert run.sender_cpu > 0  # two storescu processes ran and were reaped
    assert 0 < run.busy <= 1


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


def test_the_table_gives_median_and_best_ratios_to_dcmtk() -> None:
    run = ingest.Run
    runs = {
        "ours": [
            run(700.0, 30.0, 12.0, 0.9),
            run(800.0, 31.0, 11.0, 1.0),
            run(750.0, 29.0, 13, 0.95),
        ],
        "dcmtk": [
            run(600.0, 40.0, 12.0, 0.8),
            run(1200.0, 13.0, 14.0, 1.0),
            run(650, 42, 13, 0.85),
        ],
    }
    summary = ingest.summarise(runs)
    assert summary["ours"] == {
        "median": 750.0,
        "best": 800.0,
        "cpu": 30.0,
        "sender_cpu": 12.0,
        "busy": 0.95,
    }
    assert summary["dcmtk"]["best"] == 1200.0 and summary["dcmtk"]["cpu"] == 40.0
    rows = ingest.table_rows(8, summary)
    assert rows[0] == "| 8 | ours | 750 | 800 | 30 | 12 | 95 % | 1.15 | 0.67 |"
    assert rows[1].endswith("| 1.00 | 1.00 |")


def test_dcmtk_sync_adds_the_sync_to_dcmtks_clock(tmp_path: Path, monkeypatch) -> None:
    files = ingest.make_images(tmp_path / "images", 2, 0.5)
    monkeypatch.setattr(ingest, "timed_sync", lambda: 100.0)  # a sync of 100 s: visible
    run = ingest.run_once("dcmtk-sync", files, 1, tmp_path)
    assert run.mbps < sum(f.stat().st_size for f in files) / 1e6 / 100.0


def test_catalog_speed_times_new_and_unchanged_records_on_both_databases(capsys) -> None:
    """Both paths of record_instance, this tree against a tree (here itself), on SQLite and
    PostgreSQL; the child asserts every record came back 'new', then 'unchanged'."""
    from benchmarks import catalog_speed

    root = Path(__file__).resolve().parents[1]
    argv = ["--before", str(root), "--count", "8", "--rounds", "1", "--postgres"]
    catalog_speed.main(argv)
    lines = capsys.readouterr().out.splitlines()
    for kind in ("sqlite", "postgresql"):
        for path in ("new", "unchanged"):
            (line,) = [x for x in lines if x.startswith(f"{kind} {path} ")]
            assert "CPU ms per record: this tree" in line and "x); wall ms" in line


def test_associations_benchmark_times_both_servers(capsys) -> None:
    from benchmarks import associations

    associations.main(["--quick"])
    out = capsys.readouterr().out
    assert out.count("round 1") == 2
    assert "| ours |" in out and "| dcmtk |" in out and "dcmtk / ours:" in out
