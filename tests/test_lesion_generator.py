"""The generator-shift benchmark (benchmarks/lesion_generator.py): its draws come from the
generator the bundled weights never trained on, stored as its sets say, and its figures count
the top finding and the lesion among findings as the committed evaluation does."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from benchmarks import lesion_generator


def _row(finding: str, p: float, hits=None, ood=False) -> dict:
    top = bool(hits) and hits[0] if finding == "malignant" else None
    return {"finding": finding, "p_malignant": p, "hits": hits, "top_hit": top, "ood": ood}


def test_figures_read_rank_top_finding_and_flags():
    rows = [
        _row("malignant", 0.9, [True, False]),
        _row("malignant", 0.6, [False, True]),
        _row("malignant", 0.2, [False, False]),
        _row("benign", 0.5),
        _row("normal", 0.1, ood=True),
        _row("normal", 0.3),
    ]
    f = lesion_generator.figures(rows)
    assert f["views"] == 6 and f["malignant"] == 3
    assert f["top_finding_hit"] == pytest.approx(1 / 3)
    assert f["lesion_among_findings"] == pytest.approx(2 / 3)
    assert f["auc_malignant_vs_rest"] == pytest.approx(7 / 9)
    assert f["auc_malignant_vs_benign_lesion"] == pytest.approx(2 / 3)
    assert f["ood_flagged_fraction"] == pytest.approx(1 / 6)


def test_the_vendor_draw_is_the_classic_generator_stored_as_the_outside_phantoms(tmp_path):
    """classic-vendor: the legacy generator's pixels, MONOCHROME1 in about half the studies,
    14-bit, JPEG 2000 lossless (the conventions of the phantoms the node is read on outside)."""
    folder = lesion_generator.draw(tmp_path, "classic-vendor", studies=4, workers=1)
    files = sorted((folder / "images").rglob("*.dcm"))
    assert len(files) == 16
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert {h.BitsStored for h in headers} == {14}
    assert {h.file_meta.TransferSyntaxUID for h in headers} == {JPEG2000Lossless}
    assert {h.PhotometricInterpretation for h in headers} == {"MONOCHROME1", "MONOCHROME2"}
    assert "classic" in (folder / "synth.json").read_text()


def test_a_miss_is_split_into_search_and_classifier_misses():
    """benchmarks/lesion_miss: a lesion among no finding counts as the search's miss when
    its own window reads at least as lesion-like as the first finding, else the classifier's."""
    from benchmarks.lesion_miss import linear, summary

    assert linear({"lesion_type": "distortion", "lesion_variant": ""})
    assert linear({"lesion_type": "calc_pleomorphic", "lesion_variant": "branching"})
    assert not linear({"lesion_type": "calc_pleomorphic", "lesion_variant": "segmental"})

    def row(is_linear, hits, own, first):
        return {"linear": is_linear, "hits": hits, "lesion_p_lesion": own, "first_p_lesion": first}

    rows = [row(True, [False, False], 0.9, 0.7), row(True, [False], 0.2, 0.8),
            row(True, [True], 0.95, 0.95), row(False, [False, True], 0.6, 0.9)]  # fmt: skip
    s = summary(rows)
    assert s["linear"]["malignant_views"] == 3 and s["linear"]["among_no_finding"] == 2
    assert s["linear"]["own_window_reaches_first_finding"] == 1
    assert s["other"]["among_no_finding"] == 0 and s["other"]["malignant_views"] == 1
    assert s["linear"]["own_window_p_lesion_median_found"] == 0.95
    assert s["linear"]["top_finding_hits"] == 1 and s["other"]["top_finding_hits"] == 0


@pytest.mark.parametrize(
    "seeds, says", [("1717", "two seeds"), ("a,b", "two integers"), ("1,2,3", "two seeds"),
                    ("-1,5", "two seeds >= 0")]
)  # fmt: skip
def test_miss_draws_need_one_seed_per_style(seeds, says, capsys):
    from benchmarks.lesion_miss import parse_args

    with pytest.raises(SystemExit) as stop:
        parse_args([f"--seeds={seeds}"])
    assert stop.value.code == 2 and says in capsys.readouterr().err
    assert parse_args(["--seeds", "7,8"]).sets == {"ligament": 7, "strands": 8}


def test_a_miss_draw_of_another_seed_is_refused_and_missing_rows_named(tmp_path):
    from benchmarks import lesion_miss

    folder = tmp_path / "ligament"
    folder.mkdir()
    (folder / "synth.json").write_text('{"seed": 1717, "n_studies": 60}')
    lesion_miss.check_draw(folder, 1717, 60)
    with pytest.raises(SystemExit, match="holds seed 1717, 60 studies; asked for seed 2323"):
        lesion_miss.check_draw(folder, 2323, 60)
    with pytest.raises(SystemExit, match="no rows"):
        lesion_miss.main(["--data", str(tmp_path), "--rows", str(tmp_path / "r"), "--analyse-only"])
    assert not (tmp_path / "r").exists()


def test_two_models_are_compared_on_the_views_only_one_finds(tmp_path):
    from benchmarks.lesion_miss import compare

    def rows(hits):
        return [{"type": "distortion", "linear": True, "hits": h} for h in hits]

    a = rows([[True], [True], [False, True], [True], [False]] + [[True]] * 5)
    b = rows([[False], [False], [False], [True], [True]] + [[True]] * 5)
    for name, r in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ligament-rows.json").write_text(json.dumps(r[:6]))
        (tmp_path / name / "strands-rows.json").write_text(json.dumps(r[6:]))
    out = compare([tmp_path / "a", tmp_path / "b"])["linear"]
    assert out["malignant_views"] == 10
    assert (out["among"]["only_a"], out["among"]["only_b"]) == (3, 1)
    assert (out["top"]["only_a"], out["top"]["only_b"]) == (2, 1)
    assert out["among"]["sign_test_p"] == pytest.approx(0.625)
    (tmp_path / "b" / "strands-rows.json").write_text(json.dumps(rows([[True]] * 3)))
    with pytest.raises(SystemExit, match="not of the same views"):
        compare([tmp_path / "a", tmp_path / "b"])
