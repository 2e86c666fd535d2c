"""The bundled lesion finder on phantoms it has not seen: located where the lesion is.

A study with a conspicuous spiculated mass in each breast is drawn from a training style
(not a training image: a seed the data set never used) and written both as MONOCHROME2 and
re-encoded as MONOCHROME1. This is a test of where findings land, on a lesion the model does
find (among its reported findings; how often the *top* finding is the lesion is measured on
the test split, docs/model.md, not here). In at least 3 of the 4 views (L and R, CC and MLO) a
reported finding must lie within the lesion's radius in the source image, after the finder's
crop, flip and resample, and both encodings must give the same answer. The exact mapping of a
finding back to source pixels, model-free and for every view, is tests/test_lesion_geometry.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from sgc_core.checkpoint import read_card
from sgc_core.lesion_fit import MIN_HIT_RADIUS_MM
from sgc_core.synth import SynthConfig
from sgc_core.synth.study import generate_study_with_truth
from sgc_core.view_model import LesionFinder, load_view_model
from worker.runtime import BUNDLED_MODELS

MODEL = BUNDLED_MODELS / "sgc-lesion-mammo"


@pytest.fixture(scope="module")
def finder() -> LesionFinder:
    model = load_view_model(MODEL)
    assert isinstance(model, LesionFinder)
    return model


@pytest.fixture(scope="module")
def study():
    return spiculated_study()


def spiculated_study():
    """A study drawn from a training style with a conspicuous spiculated mass in each breast."""
    config = SynthConfig(
        rows=832,
        cols=640,
        difficulty=0.2,
        malignant_fraction=1.0,
        normal_fraction=0.0,
        mass_fraction=1.0,
        style="strands",
        lesion_types=("mass_spiculated",),
    )
    return generate_study_with_truth(987_654, config)


def as_monochrome1(ds):
    """The same image stored inverted (MONOCHROME1), as some vendors write it."""
    out = copy.deepcopy(ds)
    top = (1 << int(ds.BitsStored)) - 1
    out.PixelData = (top - ds.pixel_array.astype(np.int64)).astype(np.uint16).tobytes()
    out.PhotometricInterpretation = "MONOCHROME1"
    out.PresentationLUTShape = "INVERSE"
    if "WindowCenter" in ds:
        out.WindowCenter = top + 1 - float(ds.WindowCenter)
    return out


def test_bundled_card_is_a_calibrated_lesion_finder() -> None:
    card = read_card(MODEL)
    weights = MODEL.with_suffix(".safetensors")
    assert weights.stat().st_size <= 25 * 2**20
    lesion = card["lesion"]
    assert lesion["spacing_mm"] <= 0.4 and card["classes"] == ["normal", "benign", "malignant"]
    assert lesion["temperature_fine"] > 0 and 0 < lesion["operating_point"] < 1
    assert lesion["view_feature"] == lesion["finding_order"] == "pair"
    assert lesion["locate_sigma"] > 0, "findings placed on their window's fine evidence"
    report = BUNDLED_MODELS / "eval-lesion" / "report.json"
    assert report.is_file()


def _misses(datasets, truths, results) -> list[float]:
    """Per view, the distance from the nearest reported finding to the lesion, in radii."""
    out = []
    for ds, truth, result in zip(datasets, truths, results, strict=True):
        assert not isinstance(result, str), result
        spacing = float(ds.ImagerPixelSpacing[0])
        reach = max(truth.lesion_radius_px, MIN_HIT_RADIUS_MM / spacing)
        d = [
            float(np.hypot(f.centre[0] - truth.lesion_row, f.centre[1] - truth.lesion_col))
            for f in result.findings
        ]
        out.append(min(d, default=np.inf) / reach)
    return out


def test_findings_land_on_the_lesion_in_both_encodings(finder, study) -> None:
    """Mapping back through crop, flip and resample, for L and R, CC and MLO, MONOCHROME1 and
    2. The exact geometry is tests/test_lesion_geometry.py (model-free, every view); here the
    bundled model must put a reported finding on the lesion in at least 3 of the 4 views (it
    misses the L MLO mass of this study: its measured top-finding rate on the test split is in
    docs/model.md), and the MONOCHROME1 encoding must give the very same findings."""
    mono2 = finder.classify(study.datasets)
    mono1 = finder.classify([as_monochrome1(ds) for ds in study.datasets])
    hits = [m <= 1.0 for m in _misses(study.datasets, study.truth, mono2)]
    assert sum(hits) >= 3, hits
    assert all(r.method.endswith("+pair") for r in mono2), "the bundled card reads in pairs"
    assert all(f.in_partner_view is not None for r in mono2 for f in r.findings), "matched"
    for a, b in zip(mono2, mono1, strict=True):
        assert a.p_malignant == pytest.approx(b.p_malignant, abs=1e-3)
        assert len(a.findings) == len(b.findings)
        for fa, fb in zip(a.findings, b.findings, strict=True):
            assert fa.centre == pytest.approx(fb.centre, abs=2.0)


def test_classify_json_reports_located_findings(tmp_path: Path, study) -> None:
    import json

    from click.testing import CliRunner

    from sgc_node.cli import cli

    for i, ds in enumerate(study.datasets):
        ds.save_as(tmp_path / f"{i}.dcm", enforce_file_format=True)
    res = CliRunner().invoke(cli, ["classify", str(tmp_path), "--json", "--sr", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert len(doc["images"]) == 4 and doc["reports"]
    assert all(img["findings"] for img in doc["images"])
    first = doc["images"][0]["findings"][0]
    assert {"label", "p_malignant", "centre", "box", "outline"} <= set(first)
    (exam,) = doc["studies"].values()
    assert 0.0 <= exam["p_malignant"] <= 1.0 and {b["laterality"] for b in exam["breasts"]} == {
        "L",
        "R",
    }
