"""The phantom family: styles, morphologies, and the exactness of the lesion truth."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from sgc_core.pixels import presentation_values
from sgc_core.preprocess import PreprocessConfig, preprocess_dataset
from sgc_core.synth import SynthConfig, generate_study, generate_study_with_truth, write_dataset
from sgc_core.synth.detector import Anatomy, expose
from sgc_core.synth.lesions import render_lesion
from sgc_core.synth.morphologies import LESION_TYPES, sample_morphology
from sgc_core.synth.phantom import render_view, sample_breast
from sgc_core.synth.study import study_style
from sgc_core.synth.styles import FAMILY_STYLES, HELD_OUT_STYLE, STYLES, TRAINING_STYLES
from sgc_core.view_meta import chest_wall_side
from tests.test_data_synth import dciodvfy_errors, digest, read_labels

# sha256 of the pixels of generate_study([3, 1]) (classic style), first 16 hex digits, as
# the generator wrote them before styles existed.
CLASSIC_DIGEST = "2c0c25a046784c93"


ALL_STYLES = list(STYLES)
LESION_NAMES = list(LESION_TYPES)
# Every family style with three lesion types, rotating so that every type is drawn.
TRUTH_CASES = [
    (style, LESION_NAMES[(3 * i + j) % len(LESION_NAMES)])
    for i, style in enumerate(FAMILY_STYLES)
    for j in range(3)
]


@pytest.mark.parametrize(("style", "lesion_type"), TRUTH_CASES)
def test_lesion_truth_is_where_the_written_image_changes(style, lesion_type):
    """For both lateralities and views, the written image (in presentation space, so
    MONOCHROME1 and VOI LUT styles are read as a viewer shows them) differs from the same
    study without its lesion exactly around (lesion_row, lesion_col), and nowhere else."""
    config = SynthConfig(style=style, difficulty=0.2, lesion_types=(lesion_type,))
    seed = [71, TRUTH_CASES.index((style, lesion_type))]
    study = generate_study_with_truth(seed, config)
    plain = generate_study_with_truth(seed, config, render_lesions=False)
    margin = 3 + 2 * STYLES[style].detector.unsharp[0] / config.spacing_mm(STYLES[style])
    for ds, ds0, truth in zip(study.datasets, plain.datasets, study.truth, strict=True):
        assert truth.lesion_type == lesion_type and truth.style == style
        assert truth.pixel_spacing_mm == pytest.approx(float(ds.PixelSpacing[0]), rel=1e-5)
        shown, plain_shown = _shown(ds), _shown(ds0)
        centre = (truth.lesion_row, truth.lesion_col)
        # Where the window clips the centre to white (or black) in both, it cannot change.
        clipped = all(v[centre] in (0.0, 1.0) for v in (shown, plain_shown))
        assert _lesion_is_at(shown - plain_shown, truth, lesion_type, margin, clipped)


@pytest.mark.parametrize("lesion_type", LESION_NAMES)
def test_classic_lesion_truth_is_where_the_pixels_change(lesion_type):
    """The classic style draws Poisson noise, whose random stream depends on the lesion, so
    each view is compared with its lesion-free twin rendered from the same generator."""
    config = SynthConfig(difficulty=0.2)
    lesion = sample_morphology(np.random.default_rng(8), lesion_type, 0.2)
    for laterality in ("L", "R"):
        breast = sample_breast(np.random.default_rng(9), laterality, lesion, config)
        for view in ("CC", "MLO"):
            seen = render_view(np.random.default_rng(10), breast, view, config)
            plain = render_view(
                np.random.default_rng(10), replace(breast, lesion=None), view, config
            )
            a, b = seen.pixels.astype(float), plain.pixels.astype(float)
            # Each image is scaled by its own 95th percentile, which a large lesion in a fatty
            # breast moves a little: undo that one global factor.
            floor = 0.02 * (2**config.bits_stored - 1)
            tissue = b > 3 * floor
            factor = float(np.median((a[tissue] - floor) / (b[tissue] - floor)))
            truth = SimpleNamespace(
                lesion_row=seen.lesion_center[0],
                lesion_col=seen.lesion_center[1],
                lesion_radius_px=seen.lesion_radius_px,
                lesion_box=seen.lesion_box,
            )
            diff = (a - floor) - factor * (b - floor)
            assert _lesion_is_at(diff, truth, lesion_type, 3.0), (laterality, view)


def _shown(ds) -> np.ndarray:
    """What a viewer shows, bright = dense. An image without a VOI transform (For
    Processing) is stretched over its own range by viewers, which a lesion at the maximum
    moves: it is compared over the fixed range of its stored values instead."""
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        return presentation_values(ds)
    top = 2**ds.BitsStored - 1
    stored = ds.pixel_array.astype(float)
    return (top - stored if ds.PhotometricInterpretation == "MONOCHROME1" else stored) / top


def _lesion_is_at(
    diff: np.ndarray, truth, lesion_type: str, margin: float, clipped: bool = False
) -> bool:
    """The difference stands out of the noise, all of its strong part lies within the
    lesion's radius (+ margin) of the truth and, for a mass or distortion, at the centre
    (near it for a lucent-centred mass, or where the display clips the centre)."""
    noise = 1.4826 * float(np.median(np.abs(diff)))
    peak = float(np.abs(diff).max())
    assert peak > 8 * noise and peak > 0, (truth, peak, noise)
    strong = np.argwhere(np.abs(diff) > max(0.25 * peak, 6 * noise))
    distance = np.hypot(strong[:, 0] - truth.lesion_row, strong[:, 1] - truth.lesion_col)
    assert distance.max() <= truth.lesion_radius_px + margin, (truth, distance.max())
    if lesion_type == "mass_lucent" or (clipped and not lesion_type.startswith("calc")):
        # Rim and fat core may cancel at the very centre (and a display clipped there shows
        # no change): the change is strong near it.
        r0, c0, half = truth.lesion_row, truth.lesion_col, max(2, int(truth.lesion_radius_px / 2))
        near = diff[max(0, r0 - half) : r0 + half + 1, max(0, c0 - half) : c0 + half + 1]
        assert np.abs(near).max() > 0.25 * peak, truth
    elif not lesion_type.startswith("calc"):
        centre = diff[truth.lesion_row, truth.lesion_col]
        assert centre > 0.05 * peak, (truth, centre, peak)  # denser is brighter
    # The tight box (lesion_ymin/xmin/ymax/xmax) holds the strong change, up to the blur of
    # the detector and its processing, and lies inside the circle's square.
    ymin, xmin, ymax, xmax = truth.lesion_box
    inside = (
        (strong[:, 0] >= ymin - margin)
        & (strong[:, 0] <= ymax + margin)
        & (strong[:, 1] >= xmin - margin)
        & (strong[:, 1] <= xmax + margin)
    )
    assert inside.all(), (truth, strong[~inside][:5])
    r = truth.lesion_radius_px + 2
    assert truth.lesion_row - r <= ymin <= ymax <= truth.lesion_row + r, truth
    assert truth.lesion_col - r <= xmin <= xmax <= truth.lesion_col + r, truth
    return True


@pytest.mark.parametrize("style", ALL_STYLES)
def test_every_style_writes_valid_mg_images_with_its_header_convention(tmp_path, style):
    labels = write_dataset(tmp_path, 1, seed=2, size="128x104", style=style)
    convention = STYLES[style].header
    rows = read_labels(labels)
    assert {r["style"] for r in rows} == {style}
    for r in rows:
        path = tmp_path / r["path"]
        assert dciodvfy_errors(path) == [], path
        ds = pydicom.dcmread(path)
        assert ds.PhotometricInterpretation == convention.photometric == r["photometric"]
        assert ds.BitsStored == convention.bits_stored
        assert ds.PresentationIntentType == convention.intent
        assert ("VOILUTSequence" in ds) == (convention.voi == "lut")
        assert ("WindowCenter" in ds) == (convention.voi == "window")
        assert float(ds.PixelSpacing[0]) == pytest.approx(convention.field_height_mm / 128, 1e-5)
        assert float(r["pixel_spacing_mm"]) == pytest.approx(float(ds.PixelSpacing[0]), 1e-5)
        chest_wall_left = r["laterality"] == "L" or not convention.hanging
        assert chest_wall_side(ds) == ("left" if chest_wall_left else "right")
        image = presentation_values(ds)
        third = image.shape[1] // 3
        # The breast is thickest at the chest wall: that side is the brighter one.
        assert (image[:, :third].mean() > image[:, -third:].mean()) == chest_wall_left
        # The node's preprocessing finds the breast, turns its chest wall to the left and
        # does not take the style for a non-mammogram.
        pre = preprocess_dataset(ds, PreprocessConfig(image_size=64))
        assert pre.breast_found and pre.ood_reasons == ()
        assert pre.flipped == (not chest_wall_left)


def test_mixed_draws_training_styles_only_and_hold_out_none_draws_all(tmp_path):
    assert HELD_OUT_STYLE not in TRAINING_STYLES and len(TRAINING_STYLES) >= 3

    def drawn(config: SynthConfig, n: int = 300) -> Counter:
        rngs = (np.random.default_rng(np.random.SeedSequence([4, i])) for i in range(n))
        return Counter(study_style(rng, config).name for rng in rngs)

    assert set(drawn(SynthConfig(style="mixed"))) == set(TRAINING_STYLES)
    everything = drawn(SynthConfig(style="mixed", hold_out=None))
    assert set(everything) == set(FAMILY_STYLES)
    assert min(everything.values()) > 300 / len(FAMILY_STYLES) / 2  # uniform, roughly
    assert "gauss" not in drawn(SynthConfig(style="mixed", hold_out="gauss"))
    # The set written has, per patient, the style its (seed, index) draws.
    rows = read_labels(write_dataset(tmp_path, 4, seed=4, size="64x52", style="mixed"))
    for index, patient in enumerate(sorted({r["patient_id"] for r in rows})):
        expected = study_style(
            np.random.default_rng(np.random.SeedSequence([4, index])), SynthConfig(style="mixed")
        )
        assert {r["style"] for r in rows if r["patient_id"] == patient} == {expected.name}


def test_mixed_sets_are_reproducible_prefixes_whatever_the_workers(tmp_path):
    write_dataset(tmp_path / "a", 2, seed=6, size="64x52", style="mixed")
    write_dataset(tmp_path / "b", 3, seed=6, size="64x52", style="mixed", workers=2)
    first = digest(tmp_path / "a" / "images")
    assert {k: v for k, v in digest(tmp_path / "b" / "images").items() if k in first} == first
    # synth.json describes every style the set holds, parameter by parameter.
    meta = json.loads((tmp_path / "b" / "synth.json").read_text())
    used = {r["style"] for r in read_labels(tmp_path / "b" / "labels.csv")}
    assert set(meta["styles"]) == used and meta["config"]["style"] == "mixed"
    for name in used:
        assert meta["styles"][name]["header"]["bits_stored"] == STYLES[name].header.bits_stored


def test_classic_style_is_the_generator_before_styles_byte_for_byte():
    """The bundled model's data and the tests written before styles depend on it."""
    pixels = b"".join(ds.PixelData for ds in generate_study([3, 1]))
    assert hashlib.sha256(pixels).hexdigest()[:16] == CLASSIC_DIGEST


@pytest.mark.parametrize("lesion_type", LESION_NAMES)
def test_each_morphology_has_its_class_and_shape(lesion_type):
    malignant, calcification = LESION_TYPES[lesion_type]
    lesion = sample_morphology(np.random.default_rng(3), lesion_type, 0.3)
    assert lesion.lesion_type == lesion_type and lesion.malignant == malignant
    assert lesion.is_mass == (not calcification)
    atten = np.zeros((201, 201))
    render_lesion(atten, lesion, (100.0, 100.0), 0.2, 0.0)
    assert np.abs(atten).max() > 0
    # Nothing beyond the radius written to labels.csv (plus the blur of an ill-defined margin).
    reach = (lesion.extent_mm + 2 * lesion.margin_blur_mm) / 0.2 + 2
    inside = np.hypot(*np.mgrid[-100:101, -100:101]) <= reach
    assert np.abs(atten[~inside]).max(initial=0.0) < 0.02 * np.abs(atten).max()
    if lesion_type == "mass_lucent":
        assert atten.min() < 0 < atten.max()  # a fat core inside a denser rim
    elif lesion_type == "distortion":
        # Strands reach far out, but there is no mass: little of the disc is dense.
        dense = atten > 0.5 * atten.max()
        assert lesion.extent_mm >= 5 and dense.sum() < 0.05 * inside.sum()
    else:
        assert atten.min() >= 0


def test_pixel_mm_gives_every_style_that_spacing():
    config = SynthConfig(style="mixed", pixel_mm=0.4)
    for name in STYLES:
        sized = config.for_style(STYLES[name])
        assert sized.spacing_mm(STYLES[name]) == pytest.approx(0.4, rel=0.005)
        assert sized.cols / sized.rows == pytest.approx(2560 / 3328, rel=0.01)
    study = generate_study_with_truth(1, SynthConfig(style="ducts", pixel_mm=1.0))
    ds, truth = study.datasets[0], study.truth[0]
    assert (ds.Rows, float(ds.PixelSpacing[0])) == (205, pytest.approx(1.0))
    assert truth.pixel_spacing_mm == pytest.approx(1.0)
    with pytest.raises(ValueError, match="pixel_mm"):
        SynthConfig(pixel_mm=0.01)


def test_each_class_has_several_patterns_and_clusters_are_centred():
    variants: dict[str, set[str]] = {}
    for seed in range(40):
        for lesion_type in ("calc_benign", "calc_pleomorphic", "mass_lucent"):
            lesion = sample_morphology(np.random.default_rng(seed), lesion_type, 0.5)
            variants.setdefault(lesion_type, set()).add(lesion.variant)
            if lesion.calcifications:
                # The written centre is the cluster's volume-weighted centre.
                calcs = lesion.calcifications
                w = np.array([c.a_mm * c.b_mm * c.b_mm * c.mu for c in calcs])
                assert abs(np.average([c.dx_mm for c in calcs], weights=w)) < 1e-9
                assert abs(np.average([c.dy_mm for c in calcs], weights=w)) < 1e-9
    assert variants == {
        "calc_benign": {"scattered", "popcorn", "rim"},
        "calc_pleomorphic": {"segmental", "branching"},
        "mass_lucent": {"oil_cyst", "lymph_node"},
    }


def test_fixed_pattern_noise_belongs_to_the_detector():
    """Two exposures on one detector share its column gains; another detector's differ."""
    shape = (128, 96)
    flat = np.zeros(shape)
    anatomy = Anatomy(flat, flat, flat == 0, flat == 0, flat, 1.0)

    def columns(seed: int, device: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        image = expose(rng, anatomy, STYLES["ducts"], 0.0, 14, device).pixels.astype(float)
        return image.mean(axis=0) - image.mean()

    same = np.corrcoef(columns(1, 0), columns(2, 0))[0, 1]
    other = np.corrcoef(columns(1, 0), columns(2, 1))[0, 1]
    assert same > 0.9 and abs(other) < 0.5, (same, other)


def test_style_options_are_checked():
    with pytest.raises(ValueError, match="unknown style 'vendorx'"):
        SynthConfig(style="vendorx")
    with pytest.raises(ValueError, match="not in the family"):
        SynthConfig(style="mixed", hold_out="classic")
    with pytest.raises(ValueError, match="unknown lesion type"):
        SynthConfig(lesion_types=("blob",))
    with pytest.raises(ValueError, match="classic style only"):
        SynthConfig(style="gauss", bits_stored=14)
    with pytest.raises(ValueError, match="classic style only"):
        write_dataset(Path("/nonexistent"), 1, style="ducts", monochrome="MONOCHROME1")
