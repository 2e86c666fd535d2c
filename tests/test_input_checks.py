"""The model-independent input checks (sgc_core.input_checks): what every mammogram has.

They close the hole a likelihood model leaves open: a flat image can score inside the
mammograms' bits/dim band, so it must be flagged by what it lacks, not by its density."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file

from sgc_core.inference import load_classifier
from sgc_core.input_checks import input_ood_reasons
from sgc_core.preprocess import PreprocessConfig, preprocess_dataset, preprocess_file
from sgc_core.synth import SynthConfig, generate_study

CFG = PreprocessConfig(image_size=32, scaling="[0,1]")


@pytest.fixture(scope="module")
def study():
    return generate_study(77, SynthConfig(difficulty=0.3))


def _with_pixels(ds, pixels: np.ndarray):
    out = copy.deepcopy(ds)
    out.Rows, out.Columns = pixels.shape
    out.PixelData = pixels.astype(np.uint16).tobytes()
    return out


def test_synthetic_mammograms_pass(study):
    for ds in study:
        assert preprocess_dataset(ds, CFG).ood_reasons == ()


@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_constant_image_is_flagged_whatever_its_value(study, fraction):
    """Below the window a constant image is black (no breast); inside or above it, it is a
    frame-filling bright region without structure. Either way it is named."""
    ds = study[0]
    value = int((2 ** int(ds.BitsStored) - 1) * fraction)
    out = preprocess_dataset(_with_pixels(ds, np.full((ds.Rows, ds.Columns), value)), CFG)
    assert out.ood_reasons[0].startswith(("no tissue structure", "no breast found"))
    assert len(out.ood_reasons) <= 2, out.ood_reasons
    assert all("from side to side" in r for r in out.ood_reasons[1:]), out.ood_reasons
    if fraction >= 0.5:
        assert out.ood_reasons[0].startswith("no tissue structure")


def test_black_image_has_no_breast(study):
    ds = study[0]
    out = preprocess_dataset(_with_pixels(ds, np.zeros((ds.Rows, ds.Columns))), CFG)
    assert not out.breast_found
    assert any("no breast found" in r for r in out.ood_reasons)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_other_modalities_are_named(name):
    out = preprocess_file(get_testdata_file(name), CFG)
    assert out.ood_reasons[0].startswith(f"modality {out.modality} is not mammography")


def test_breast_with_a_spread_is_not_flat():
    image = np.zeros((40, 40))
    image[5:35, :20] = np.linspace(0.2, 0.8, 20)[None, :]
    mask = image > 0.05
    assert input_ood_reasons(image, mask, "MG") == ()
    image[5:35, :20] = 0.5
    assert input_ood_reasons(image, mask, "MG")[0].startswith("no tissue structure")


@pytest.mark.parametrize(
    "regions,reason",
    [
        ([(slice(10, 30), slice(10, 30))], "does not lie against a side edge"),
        ([(slice(5, 35), slice(0, 40))], "from side to side"),
        ([(slice(5, 35), slice(20, 40))], None),  # a right breast: chest wall on the right
        ([(slice(17, 23), slice(0, 12))], None),  # a small breast, 15 % of the rows
        ([(slice(5, 35), slice(3, 20))], None),  # a dark strip at the chest wall, 8 % wide
        ([(slice(5, 35), slice(0, 20)), (slice(5, 15), slice(20, 40))], None),  # far, 25 %
        ([(slice(5, 35), slice(0, 20)), (slice(5, 19), slice(20, 40))], "from side to side"),
    ],
)
def test_a_bright_region_must_lie_as_a_breast_does(regions, reason):
    """Against one side edge (the chest wall), not the other: a section or a sector in the
    middle of the frame, or a picture filling it, is named; a breast on either side, a small
    one, one behind a dark strip at the chest wall or one reaching the far edge on a quarter
    of the rows is not."""
    image = np.zeros((40, 40))
    for rows, cols in regions:
        image[rows, cols] = np.linspace(0.2, 0.8, 40)[None, cols]
    reasons = input_ood_reasons(image, image > 0.05, "MG")
    if reason is None:
        assert reasons == ()
    else:
        assert len(reasons) == 1 and reason in reasons[0], reasons
    assert input_ood_reasons(image, image > 0.05, "MG", whole_breast=False) == ()


def test_a_view_of_part_of_the_breast_is_not_held_to_the_placement_rule(study):
    """A spot-compression or magnification view, or one marked PartialView, frames tissue
    away from the chest wall on purpose; a plain view of the same pixels is flagged."""
    from pydicom.dataset import Dataset

    ds = study[0]
    top = 2 ** int(ds.BitsStored) - 1
    yy, xx = np.mgrid[: ds.Rows, : ds.Columns]
    disc = np.hypot(yy - ds.Rows / 2, xx - ds.Columns / 2) < ds.Columns / 4
    pixels = np.where(disc, top * (0.3 + 0.4 * (xx % 7) / 7), 0)
    plain = _with_pixels(ds, pixels)
    assert "does not lie against a side edge" in preprocess_dataset(plain, CFG).ood_reasons[0]
    partial = _with_pixels(ds, pixels)
    partial.PartialView = "YES"
    spot = _with_pixels(ds, pixels)
    modifier = Dataset()
    modifier.CodeValue, modifier.CodingSchemeDesignator = "R-102D7", "SRT"
    modifier.CodeMeaning = "Spot Compression"
    spot.ViewModifierCodeSequence = [modifier]
    for view in (partial, spot):
        assert preprocess_dataset(view, CFG).ood_reasons == ()


def test_synthetic_mammograms_of_every_style_lie_as_breasts_do():
    from sgc_core.synth import STYLES

    for i, style in enumerate(STYLES):
        for ds in generate_study(300 + i, SynthConfig(difficulty=0.3, style=style)):
            assert preprocess_dataset(ds, CFG).ood_reasons == (), style


def test_classifier_flags_inputs_the_checks_reject(tiny_model, study):
    """Input reasons make the flag whatever the bits/dim, and are carried in words."""
    clf = load_classifier(tiny_model)
    config = PreprocessConfig.from_dict(clf.card.data["preprocess"])
    ds = study[0]
    white = 2 ** int(ds.BitsStored) - 1  # above any window: a breast-sized flat region
    blank = _with_pixels(ds, np.full((ds.Rows, ds.Columns), white))
    pres = [preprocess_dataset(d, config) for d in (study[1], blank)]
    results = clf.classify(torch.stack([p.tensor for p in pres]), [p.ood_reasons for p in pres])
    assert "no tissue structure" in (results[1].ood_reason or "")
    assert results[1].ood
    plain = clf.classify(torch.stack([p.tensor for p in pres]))
    assert plain[0].ood == results[0].ood
    with pytest.raises(ValueError, match="input_ood has 1 entries for 2 images"):
        clf.classify(torch.stack([p.tensor for p in pres]), [()])


def test_real_sections_and_pictures_sent_as_mg_are_named():
    """A CT section (in the middle of the frame), an ultrasound sector and a colour capture
    (across all of it), each put under a mammogram's header, are flagged by where they lie:
    the header check passes them and the bundled finder's denoising error did not
    (benchmarks/results/lesion_ood/). A regression test: these inputs were seen when the
    thresholds were set; the measurement on pictures they were not set on is the
    benchmark's."""
    from benchmarks.ood_inputs import non_mammography_inputs

    by_name = {
        ds.ImageComments.split()[0]: ds
        for ds in non_mammography_inputs({}, kinds=("relabelled",))["relabelled"]
    }
    expected = {
        "J2K_pixelrep_mismatch.dcm": "does not lie against a side edge",
        "examples_jpeg2k.dcm": "does not lie against a side edge",
        "SC_rgb_jpeg.dcm": "from side to side",
    }
    for name, reason in expected.items():
        reasons = preprocess_dataset(by_name[name], CFG).ood_reasons
        assert reasons and reason in reasons[0], (name, reasons)


def test_the_recount_adds_views_the_checks_now_flag(tmp_path, study, capsys):
    """benchmarks/input_recount.py: a recorded evaluation's views, read again from their
    draw, are flagged now where they were then or where today's checks give a reason."""
    from benchmarks.input_recount import main as recount

    picture = _with_pixels(study[0], np.full((study[0].Rows, study[0].Columns), 2000))
    rows = []
    for i, ds in enumerate([study[1], picture]):
        (tmp_path / "draw" / f"P{i}").mkdir(parents=True)
        ds.save_as(tmp_path / "draw" / f"P{i}" / "L_CC.dcm", enforce_file_format=True)
        rows.append({"part": "test", "patient": f"P{i}", "path": "L_CC.dcm", "ood": False})
    (tmp_path / "views.json").write_text(json.dumps(rows))
    args = ["--views", str(tmp_path / "views.json"), "--data", str(tmp_path / "draw")]
    assert recount([*args, "--shape"]) == 0
    out = capsys.readouterr().out
    assert "test: 2 views; flagged then 0" in out and "flagged now 1 (50.0%)" in out
    assert "newly 1;" in out and "P1 L_CC.dcm: no breast found" in out
    # the shape's margins are read on the one view with a breast; a phantom's is ~1
    assert re.search(r"chest-wall runs over 1 views: least (0\.9\d\d|1\.000)", out), out
    assert "solidity over 1 views" in out
    rows.append({"part": "test", "patient": "P9", "path": "L_CC.dcm", "ood": False})
    (tmp_path / "views.json").write_text(json.dumps(rows))
    with pytest.raises(SystemExit, match="1 views of .* are not under"):
        recount(args)
