"""A view read with the other projection of its breast (sgc_core/view_pairs.py), in the
finder's classify step, in the exam, and in benchmarks/lesion_pair.py that judges it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydicom.uid import generate_uid

from benchmarks.lesion_pair import main as pair_main
from sgc_core.exam import exam_result, view_feature
from sgc_core.lesion_card import LesionCard, Platt
from sgc_core.lesion_scan import platt
from sgc_core.results import ViewResult
from sgc_core.sde import VPSDE
from sgc_core.unet import architecture_spec, build_score_model
from sgc_core.view_model import LesionFinder
from sgc_core.view_pairs import FEATURE, PAIRED, pair_feature, read_in_pairs
from tests.test_lesion_geometry import _breast_with_dot

ROOT = Path(__file__).resolve().parents[1]
PAIR = LesionCard(view_feature="pair", view=Platt(1.0, 0.0), operating_point=0.5)


def _view(lat: str, view: str, own: float | None) -> ViewResult:
    extra = {} if own is None else {"top_malignant_logit": own}
    p = None if own is None else 0.5
    return ViewResult(p, "", (), None, False, (), 0.0, lat, view, (0, 0, 1, 1), "scan", 0, extra)


def test_a_view_reads_with_the_other_projection_of_its_breast_only() -> None:
    r_cc, r_mlo, l_cc, l_mlo = (
        _view("R", "CC", 2.0),
        _view("R", "MLO", 0.0),
        _view("L", "CC", 1.0),
        _view("L", "MLO", None),
    )
    study = [r_cc, r_mlo, l_cc, l_mlo]
    assert pair_feature(r_cc, study) == pytest.approx(1.0)
    assert pair_feature(r_mlo, study) == pytest.approx(1.0)
    assert pair_feature(l_cc, study) == pytest.approx(1.0), "an unscored partner: its own"
    assert pair_feature(l_mlo, study) is None
    twin = _view("R", "CC", -4.0)
    assert pair_feature(r_cc, [r_cc, twin]) == pytest.approx(2.0), "same projection: no partner"
    assert pair_feature(r_cc, [r_cc, r_mlo, _view("R", "MLO", 4.0)]) == pytest.approx(3.0)  # fmt: skip


def test_pairs_never_cross_studies_and_an_alone_card_changes_nothing() -> None:
    views = [_view("R", "CC", 2.0), _view("R", "MLO", 0.0), _view("R", "MLO", -6.0)]
    alone = read_in_pairs(views, ["s1", "s1", "s2"], LesionCard())
    assert alone == views
    paired = read_in_pairs(views, ["s1", "s1", "s2"], PAIR)
    assert [v.extra[FEATURE] for v in paired] == pytest.approx([1.0, 1.0, -6.0])
    assert paired[0].p_malignant == pytest.approx(platt(PAIR.view, 1.0))
    assert paired[0].method == "scan+pair" and paired[0].predicted_class == "malignant"
    assert paired[2].predicted_class == "not malignant"
    assert [v.extra[PAIRED] for v in paired] == [True, True, False], "s2's MLO: read alone"


def test_the_exam_reads_the_pair_feature_so_a_breast_is_its_two_views_mean() -> None:
    paired = read_in_pairs([_view("R", "CC", 3.0), _view("R", "MLO", -1.0)], ["s", "s"], PAIR)
    assert view_feature(paired[0]) == pytest.approx(1.0)
    exam = exam_result(paired, PAIR)
    assert exam.breasts[0].p_malignant == pytest.approx(platt(PAIR.breast, 1.0))
    assert view_feature(_view("R", "CC", 3.0)) == pytest.approx(3.0), "alone: its own feature"


def test_a_card_refuses_an_unknown_view_feature() -> None:
    with pytest.raises(ValueError, match="view_feature"):
        LesionCard(view_feature="bilateral")


def test_the_finder_pairs_views_by_study_instance_uid() -> None:
    torch.manual_seed(0)
    model = build_score_model(architecture_spec("default", 3, 1, 64, 8), VPSDE())
    card = json.loads((ROOT / "sgc_core/models/sgc-lesion-mammo.json").read_text())
    card["lesion"].update(view_feature="pair", k_fine=2)
    finder = LesionFinder(model, card)
    cc, mlo, other = (
        _breast_with_dot("R", v, "MONOCHROME2", (400, 500), 0.1) for v in ("CC", "MLO", "CC")
    )
    mlo.StudyInstanceUID = cc.StudyInstanceUID
    other.StudyInstanceUID = generate_uid()
    results = finder.classify([cc, mlo, other])
    own = [r.extra["top_malignant_logit"] for r in results]
    assert results[0].extra[FEATURE] == pytest.approx(0.5 * (own[0] + own[1]))
    assert results[2].extra[FEATURE] == pytest.approx(own[2]), "another study: alone"


def _rows() -> list[dict]:
    rows = []
    for i in range(40):
        finding = ("malignant", "benign", "normal", "normal")[i % 4]
        base = {"malignant": 2.0, "benign": 0.0, "normal": -1.0}[finding]
        for j, path in enumerate(("R_CC.dcm", "R_MLO.dcm", "L_CC.dcm", "L_MLO.dcm")):
            side_finding = finding if path.startswith("R") else "normal"
            noise = ((i * 7 + j * 3) % 5 - 2) * 0.8
            own = (base if path.startswith("R") else -1.0) + noise
            rows.append({"part": "val", "patient": f"P{i}", "path": path, "finding": side_finding,
                         "p_malignant": 0.5, "top_malignant_logit": own, "top_hit": None})  # fmt: skip
    return rows


def test_the_judging_script_fits_by_folds_writes_a_pair_card_and_reads_with_it(
    tmp_path, capsys
) -> None:
    rows, card = tmp_path / "views.json", tmp_path / "card.json"
    rows.write_text(json.dumps(_rows()))
    card.write_text(json.dumps({"name": "t", "version": "1", "lesion": LesionCard().to_dict()}))
    out = tmp_path / "pair.json"
    assert pair_main(["--rows", str(rows), "--card", str(card), "--write-card", str(out),
                      "--version", "2", "--resamples", "50"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "pair minus alone auc_malignant_vs_rest" in text and "breast AUC" in text
    written = json.loads(out.read_text())
    assert written["version"] == "2" and written["lesion"]["view_feature"] == "pair"
    assert written["lesion"]["view"]["a"] > 0
    assert pair_main(["--rows", str(rows), "--card", str(card), "--pair-card", str(out),
                      "--resamples", "50"]) == 0  # fmt: skip
    with pytest.raises(SystemExit, match="does not read views in pairs"):
        pair_main(["--rows", str(rows), "--card", str(card), "--pair-card", str(card)])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="not readable JSON"):
        pair_main(["--rows", str(tmp_path / "bad.json"), "--card", str(card)])
