"""Placing a finding on its window's fine evidence (card ``locate_sigma``).

What is tested is the geometry (a peak inside the window's breast and margin, a blob's
radius, the window's origin undone) and, with the bundled model, that relocating a candidate
changes where it is reported, within its window, never its probabilities or its windows.
That the bundled model's findings land on lesions is tests/test_lesion_bundled.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.lesion_locate import main as locate_main
from sgc_core.datasets.crops import cut
from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_locate import blob_radius, fine_location, smoothed, window_peak
from sgc_core.lesion_scan import LesionScanner
from sgc_core.scan_geometry import scan_dataset
from sgc_core.view_model import load_view_model
from tests.test_finding_match import _finding
from tests.test_lesion_bundled import MODEL, spiculated_study

ROOT = Path(__file__).resolve().parents[1]


def _disc(size: int, r: float, c: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (np.hypot(yy - r, xx - c) <= radius).astype(np.float64)


def test_the_peak_is_the_blob_inside_breast_and_margin() -> None:
    ev = _disc(64, 40, 22, 6) - 0.2
    ev[1, 1] = 50.0  # a spike at the window's edge: border, not tissue
    breast = np.ones((64, 64))
    peak = window_peak(smoothed(ev, breast, 2.0), margin=4)
    assert peak is not None and np.hypot(peak[0] - 40, peak[1] - 22) <= 1.5
    breast[:, 16:30] = 0.0  # the blob off the breast: the peak cannot sit there
    off = window_peak(smoothed(ev, breast, 2.0), margin=4)
    assert off is None or not 16 <= off[1] < 30


def test_no_positive_evidence_gives_no_peak() -> None:
    assert window_peak(smoothed(-np.ones((64, 64)), np.ones((64, 64)), 2.0), 4) is None
    assert window_peak(np.ones((6, 6)), margin=4) is None


@pytest.mark.parametrize("radius", [4.0, 9.0, 14.0])
def test_blob_radius_measures_a_disc(radius: float) -> None:
    emap = smoothed(_disc(96, 48, 48, radius), np.ones((96, 96)), 0.5)
    assert blob_radius(emap, 48, 48, 32) == pytest.approx(radius, abs=1.0)
    assert blob_radius(-emap, 48, 48, 32) == 16.0  # nothing positive: half of half


@pytest.mark.parametrize("lesion,centre", [((150, 90), (140, 100)), ((20, 15), (10, 10))])
def test_a_window_peak_is_placed_back_on_the_scan_grid(lesion, centre) -> None:
    """A blob of evidence at a known scan pixel, seen in a window cut around another (at the
    image's corner too, where the window hangs over the edge), is placed on that pixel."""
    scan_ev = _disc(200, *lesion, 7.0) - 0.1
    mask = np.ones((200, 200), dtype=np.float32)
    ev, breast = cut(scan_ev, *centre, 64), cut(mask, *centre, 64)
    row, col, radius = fine_location(ev, breast, centre, sigma=1.5, margin=4)
    assert np.hypot(row - lesion[0], col - lesion[1]) <= 1.0
    assert radius == pytest.approx(7.0, abs=1.5)
    assert fine_location(-np.abs(ev), breast, centre, 1.5, 4) is None


def test_a_negative_sigma_or_reach_is_refused() -> None:
    with pytest.raises(ValueError, match="locate_sigma"):
        LesionCard(locate_sigma=-1.0)
    with pytest.raises(ValueError, match="locate_reach"):
        LesionCard(locate_reach=-1.0)


def test_a_reach_keeps_the_peak_near_the_window_centre() -> None:
    """Stronger evidence far from the centre (the coarse peak) wins without a reach; with one,
    the peak is the best within it, and a window with nothing positive within it has none."""
    ev = 2.0 * _disc(64, 12, 50, 5) + _disc(64, 36, 30, 4) - 0.1
    smooth = smoothed(ev, np.ones((64, 64)), 1.0)
    assert np.hypot(*np.subtract(window_peak(smooth, 4), (12, 50))) <= 1.5
    assert np.hypot(*np.subtract(window_peak(smooth, 4, reach=10.0), (36, 30))) <= 1.5
    far = smoothed(2.0 * _disc(64, 12, 50, 5) - 0.1, np.ones((64, 64)), 1.0)
    assert window_peak(far, 4, reach=10.0) is None
    centre = (100.0, 80.0)
    row, col, _ = fine_location(ev, np.ones((64, 64)), centre, 1.0, 4, reach=10.0)
    assert (row, col) == (centre[0] - 32 + 36, centre[1] - 32 + 30)


def test_the_bundled_finder_moves_findings_within_their_window_only() -> None:
    """The bundled card places findings on fine evidence; placed on the coarse map instead,
    the same views get the same probabilities and windows, and every finding lies within its
    window of a coarse twin with the same probabilities, while some do move (a spiculated
    mass in each breast, L and R, CC and MLO)."""
    finder = load_view_model(MODEL)
    coarse_card = finder.lesion.replace(locate_sigma=0.0)
    coarse = LesionScanner(finder.scanner.model, finder.scanner.sde, coarse_card)
    moved = compared = 0
    for ds in spiculated_study().datasets:
        scan = scan_dataset(ds, finder.lesion.spacing_mm)
        fine_result, coarse_result = finder.scanner.scan(scan), coarse.scan(scan)
        assert fine_result.p_malignant == coarse_result.p_malignant
        assert fine_result.windows == coarse_result.windows
        reach = scan.geometry.length_to_source(finder.lesion.crop / 2 * 2**0.5)
        for f in fine_result.findings:
            twins = [g.centre for g in coarse_result.findings if g.p_lesion == f.p_lesion]
            if not twins:  # merged away by the other placement: no twin to compare with
                continue
            d = min(np.hypot(f.centre[0] - r, f.centre[1] - c) for r, c in twins)
            assert d <= reach
            moved += d > 1.0
            compared += 1
    assert compared >= 4 and moved > 0, (compared, moved)


def _run(name: str, cc_findings: list, hits: list[bool]) -> dict:
    """A lesion_select run of 4 patients: a malignant R CC (lesion at row 10, col 2, radius
    4) with ``cc_findings``, and a normal L CC with one false finding."""
    views = []
    for i in range(4):
        malignant = {"patient": f"P{i}", "path": "R_CC.dcm", "finding": "malignant"}
        views.append(
            dict(malignant, part="val", p_malignant=0.8, lesion=[10.0, 2.0, 4.0], hits=hits)
            | {"findings": [f.to_dict() for f in cc_findings]}
        )
        normal = {"patient": f"P{i}", "path": "L_CC.dcm", "finding": "normal", "hits": None}
        views.append(
            dict(normal, part="val", p_malignant=0.2, lesion=[0.0, 0.0, 0.0])
            | {"findings": [_finding(0.5, 20.0, 40).to_dict()]}
        )
    return {"model": name, "views": views}


def test_the_placement_script_compares_runs_in_pair_order_and_writes_the_card(
    tmp_path, capsys
) -> None:
    off, on = _finding(0.9, 60.0, 30), _finding(0.7, 30.0, 2)
    runs = [_run("coarse", [off, on], [False, True]), _run("fine", [on], [True])]
    (tmp_path / "sel.json").write_text(json.dumps(runs))
    card = ROOT / "sgc_core/models/sgc-lesion-mammo.json"
    argv = ["--rows", str(tmp_path / "sel.json"), "--card", str(card), "--resamples", "50"]
    out = tmp_path / "card.json"
    assert locate_main([*argv, "--write-card", str(out), "--locate-sigma", "2"]) == 0
    text = capsys.readouterr().out
    assert "coarse: 8 views, 4 malignant, 1.50 findings per view" in text
    assert "pair order 0/4 = 0.000" in text and "pair order 4/4 = 1.000" in text
    assert "median 0.00 radii" in text
    assert "fine minus coarse, top finding in pair order: +1.000" in text
    assert json.loads(out.read_text())["lesion"]["locate_sigma"] == 2.0
    assert json.loads(out.read_text())["lesion"]["locate_reach"] == 0.0, "the card's own"
    assert locate_main([*argv, "--write-card", str(out), "--locate-sigma", "2", "--locate-reach", "12"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["lesion"]["locate_reach"] == 12.0
    with pytest.raises(SystemExit, match="needs --locate-sigma"):
        locate_main([*argv, "--write-card", str(out)])
    (tmp_path / "sel.json").write_text(json.dumps(runs[:1]))
    capsys.readouterr()
    assert locate_main(argv) == 0, "one run is summarised alone"
    assert "coarse: 8 views" in (text := capsys.readouterr().out) and "minus" not in text
    (tmp_path / "sel.json").write_text(json.dumps([]))
    with pytest.raises(SystemExit, match="neither a lesion_select JSON nor a views.json"):
        locate_main(argv)
    # Two evaluations' views.json, one part of them.
    for run in runs:
        rows = run["views"] + [dict(r, part="test") for r in run["views"][:2]]
        (tmp_path / f"{run['model']}.json").write_text(json.dumps(rows))
    pair = [*argv[2:], "--rows", str(tmp_path / "coarse.json"), "--rows"]
    assert locate_main([*pair, str(tmp_path / "fine.json"), "--part", "test"]) == 0
    text = capsys.readouterr().out
    assert "coarse.json: 2 views, 1 malignant" in text and "+1.000" in text
    (tmp_path / "fine.json").write_text(json.dumps({"views": []}))
    with pytest.raises(SystemExit, match="neither a lesion_select JSON nor a views.json"):
        locate_main([*pair, str(tmp_path / "fine.json")])
