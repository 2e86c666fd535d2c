"""A finding matched with the other projection of its breast by its distance from the nipple
(sgc_core/lesion_scan.nipple_distance_mm, sgc_core/view_pairs.order_findings), and
benchmarks/lesion_match.py that judges the pair order on recorded rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.lesion_match import main as match_main
from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_scan import nipple_distance_mm
from sgc_core.results import Finding, ViewResult
from sgc_core.scan_geometry import scan_dataset
from sgc_core.view_pairs import read_in_pairs
from tests.test_lesion_geometry import _breast_with_dot

ROOT = Path(__file__).resolve().parents[1]
ORDER = LesionCard(finding_order="pair", pair_depth_mm=10.0, pair_weight=0.5)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("lat", ["L", "R"])
def test_the_distance_from_the_nipple_is_measured_in_mm_for_either_breast(lat, view, photometric):
    # The phantom breast reaches 490 source px (0.1 mm each) from its chest wall; the dot lies
    # 210 px short of that tip on either side: 21 mm behind the nipple.
    dot = (520, 300 if lat == "L" else 399)
    scan = scan_dataset(_breast_with_dot(lat, view, photometric, dot, spacing=0.1), 0.4)
    _, col = scan.geometry.to_scan(np.array([dot[0]]), np.array([dot[1]]))
    assert nipple_distance_mm(scan, col[0]) == pytest.approx(21.0, abs=0.8)
    assert nipple_distance_mm(scan, 10_000.0) == 0.0, "beyond the nipple: 0, not negative"


def _finding(p_lesion: float, depth: float | None, col: float = 0.0) -> Finding:
    return Finding("benign", p_lesion, 0.1, p_lesion, (10.0, col), 4.0, (0, 0, 1, 1), (), depth)


def _view(lat: str, view: str, *findings: Finding) -> ViewResult:
    return ViewResult(0.5, "", findings, None, False, (), 0.0, lat, view, (0, 0, 1, 1), "scan")


def test_the_finding_both_views_show_comes_first_and_every_finding_says_if_matched() -> None:
    spot, lesion = _finding(0.9, 60.0, 1.0), _finding(0.7, 30.0, 2.0)
    cc = _view("R", "CC", spot, lesion)
    mlo = _view("R", "MLO", _finding(0.8, 36.0))
    other_breast = _view("L", "MLO", _finding(0.99, 60.0))
    out = read_in_pairs([cc, mlo, other_breast], ["s", "s", "s"], ORDER)
    assert [f.centre for f in out[0].findings] == [lesion.centre, spot.centre]
    assert [f.in_partner_view for f in out[0].findings] == [True, False]
    assert out[0].p_malignant == cc.p_malignant, "the view's probability does not move"
    assert out[2].findings[0].in_partner_view is None, "the left MLO has no partner"
    marked = read_in_pairs([cc, mlo], ["s", "s"], LesionCard(view_feature="pair"))
    assert [f.centre for f in marked[0].findings] == [spot.centre, lesion.centre], "scan order"
    assert [f.in_partner_view for f in marked[0].findings] == [False, True]


def test_a_match_needs_the_same_study_the_depth_window_and_a_measured_distance() -> None:
    spot, lesion = _finding(0.9, 60.0, 1.0), _finding(0.7, 30.0, 2.0)
    cc = _view("R", "CC", spot, lesion)
    far = read_in_pairs([cc, _view("R", "MLO", _finding(0.8, 41.0))], ["s", "s"], ORDER)
    assert [f.centre for f in far[0].findings] == [spot.centre, lesion.centre], "11 mm apart"
    other = read_in_pairs([cc, _view("R", "MLO", _finding(0.8, 30.0))], ["s", "t"], ORDER)
    assert other[0].findings == cc.findings, "another study's MLO is no partner"
    blind = read_in_pairs([cc, _view("R", "MLO", _finding(0.8, None))], ["s", "s"], ORDER)
    assert [f.in_partner_view for f in blind[0].findings] == [False, False]
    assert read_in_pairs([cc], ["s"], LesionCard()) == [cc], "an alone card: untouched"


def test_a_card_refuses_an_unknown_order_or_a_window_of_no_depth() -> None:
    with pytest.raises(ValueError, match="finding_order"):
        LesionCard(finding_order="both")
    with pytest.raises(ValueError, match="pair_depth_mm"):
        LesionCard(pair_depth_mm=0.0)
    assert Finding.from_dict(_finding(0.7, 30.0).to_dict()) == _finding(0.7, 30.0)


def _row(patient: str, path: str, findings: list[Finding], hits: list[bool] | None) -> dict:
    kind = "malignant" if hits is not None else "normal"
    return {
        "part": "val",
        "patient": patient,
        "path": path,
        "finding": kind,
        "p_malignant": 0.8 if hits is not None else 0.2,
        "findings": [f.to_dict() for f in findings],
        "hits": hits,
    }


def test_the_judging_script_counts_views_moved_onto_the_lesion_and_writes_the_card(
    tmp_path, capsys
) -> None:
    rows = []
    for i in range(6):  # the lesion second in the CC, matched by the MLO's first finding
        rows.append(
            _row(f"P{i}", "R_CC.dcm", [_finding(0.9, 60.0, 1), _finding(0.7, 30.0, 2)], [0, 1])
        )
        rows.append(_row(f"P{i}", "R_MLO.dcm", [_finding(0.8, 33.0, 3)], [True]))
        rows.append(_row(f"N{i}", "L_CC.dcm", [_finding(0.5, 20.0, 4)], None))
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    card = ROOT / "sgc_core/models/sgc-lesion-mammo.json"
    out = tmp_path / "card.json"
    argv = ["--rows", str(tmp_path / "rows.json"), "--card", str(card), "--resamples", "50"]
    assert match_main([*argv, "--write-card", str(out), "--version", "9.9.9"]) == 0
    text = capsys.readouterr().out
    assert "scan order 6/12 = 0.500" in text and "pair order 12/12 = 1.000" in text
    assert "moved onto the lesion 6, off it 0" in text
    written = json.loads(out.read_text())
    assert written["lesion"]["finding_order"] == "pair" and written["version"] == "9.9.9"
    rows[0]["hits"] = None
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    with pytest.raises(SystemExit, match="malignant row without its hits"):
        match_main(argv)
    rows[0]["hits"] = [0, 1]
    rows[0]["findings"][0]["nipple_distance_mm"] = None
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    with pytest.raises(SystemExit, match="without a nipple distance"):
        match_main(argv)
