"""sgc_core.synth: valid DICOM (dciodvfy), reproducibility, labels, splits and the phantom."""

from __future__ import annotations

import csv
import hashlib
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest

from sgc_core.preprocess import (
    PreprocessConfig,
    chest_wall_side,
    preprocess_dataset,
    presentation_values,
)
from sgc_core.synth import (
    LABEL_COLUMNS,
    SynthConfig,
    generate_study,
    generate_study_with_truth,
    parse_size,
    write_dataset,
)
from sgc_core.synth.lesions import render_lesion, sample_lesion
from sgc_core.synth.morphologies import LESION_TYPES, sample_morphology
from sgc_core.synth.phantom import render_view, sample_breast
from sgc_core.synth.styles import FAMILY_STYLES, HELD_OUT_STYLE, STYLES, TRAINING_STYLES
from tests.conftest import require_binary

# sha256 of the pixels of generate_study([3, 1]) (classic style), first 16 hex digits, as
# the generator wrote them before styles existed.
CLASSIC_DIGEST = "2c0c25a046784c93"


def dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run(
        [require_binary("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60
    )
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


def read_labels(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "variant",
    [
        {"monochrome": "MONOCHROME2"},
        {"monochrome": "MONOCHROME1"},
        {"jpeg2000": True},
        {"jpeg2000": True, "monochrome": "MONOCHROME1", "bits_stored": 14},
        {"jpeg2000": True, "style": "ligament"},
    ],
    ids=["mono2", "mono1", "j2k", "j2k-mono1-14bit", "j2k-ligament-16bit"],
)
def test_every_generated_file_passes_dciodvfy_with_zero_errors(tmp_path, variant):
    write_dataset(tmp_path, 1, seed=5, size="small", normal_fraction=0.3, **variant)
    files = sorted(tmp_path.rglob("*.dcm"))
    assert len(files) == 4
    for path in files:
        assert dciodvfy_errors(path) == [], path
    ds = pydicom.dcmread(files[0])
    mono1 = variant.get("monochrome") == "MONOCHROME1" or variant.get("style") == "ligament"
    expected = "MONOCHROME1" if mono1 else "MONOCHROME2"
    assert ds.PhotometricInterpretation == expected
    assert ds.PresentationLUTShape == ("INVERSE" if expected == "MONOCHROME1" else "IDENTITY")
    if variant.get("jpeg2000"):
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless


def test_same_seed_same_files_and_a_smaller_set_is_a_prefix(tmp_path):
    write_dataset(tmp_path / "a", 2, seed=9)
    write_dataset(tmp_path / "b", 2, seed=9)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    write_dataset(tmp_path / "c", 3, seed=9)
    first = digest(tmp_path / "a" / "images")
    assert {k: v for k, v in digest(tmp_path / "c" / "images").items() if k in first} == first
    write_dataset(tmp_path / "d", 2, seed=10)
    assert digest(tmp_path / "d" / "images") != first


def test_generate_study_is_reproducible_and_has_four_views():
    a, b = generate_study(3), generate_study(3)
    assert [(d.ImageLaterality, d.ViewPosition) for d in a] == [
        ("R", "CC"),
        ("L", "CC"),
        ("R", "MLO"),
        ("L", "MLO"),
    ]
    for x, y in zip(a, b, strict=True):
        assert x.SOPInstanceUID == y.SOPInstanceUID
        assert x.PixelData == y.PixelData
    assert len({d.StudyInstanceUID for d in a}) == 1
    assert len({d.SOPInstanceUID for d in a}) == 4
    assert generate_study(4)[0].PixelData != a[0].PixelData


@pytest.mark.parametrize("bits", [12, 14])
def test_pixel_values_use_the_stored_bit_depth(bits):
    ds = generate_study(2, SynthConfig(bits_stored=bits))[1]
    pixels = ds.pixel_array
    assert ds.BitsStored == bits and ds.HighBit == bits - 1
    assert pixels.max() <= 2**bits - 1
    assert pixels.max() > 2 ** (bits - 1)  # the range is used, not 8 bits in a 16-bit word
    assert len(np.unique(pixels)) > 300  # quantum noise and texture, not flat regions


def test_labels_csv_columns_labels_and_patient_level_splits(tmp_path):
    labels = write_dataset(tmp_path, 20, seed=1, normal_fraction=0.25)
    rows = read_labels(labels)
    assert list(rows[0]) == LABEL_COLUMNS
    assert len(rows) == 80
    assert {r["label"] for r in rows} == {"benign", "malignant"}
    assert {r["finding"] for r in rows} == {"normal", "benign", "malignant"}
    for r in rows:
        assert (tmp_path / r["path"]).is_file()
        if r["finding"] == "normal":
            assert r["label"] == "benign" and r["lesion_type"] == "none" and r["lesion_row"] == ""
        else:
            assert r["lesion_type"] != "none"
            assert 0 <= int(r["lesion_row"]) < 256 and 0 <= int(r["lesion_col"]) < 208
            assert r["lesion_type"].startswith(("mass", "calc"))
    by_patient: dict[str, list[dict]] = {}
    for r in rows:
        by_patient.setdefault(r["patient_id"], []).append(r)
    splits = [group[0]["split"] for group in by_patient.values()]
    assert splits.count("test") == 3 and splits.count("val") == 3 and splits.count("train") == 14
    for group in by_patient.values():
        assert len({r["split"] for r in group}) == 1
        worst = "malignant" if any(r["finding"] == "malignant" for r in group) else "benign"
        assert {r["study_label"] for r in group} == {worst}
        for side in ("L", "R"):
            views = [r for r in group if r["laterality"] == side]
            assert len(views) == 2 and len({(r["finding"], r["lesion_type"]) for r in views}) == 1


def test_class_fractions_are_respected():
    all_malignant = generate_study_with_truth(1, SynthConfig(malignant_fraction=1.0))
    assert {t.finding for t in all_malignant.truth} == {"malignant"}
    all_normal = generate_study_with_truth(1, SynthConfig(normal_fraction=1.0))
    assert {t.finding for t in all_normal.truth} == {"normal"}
    assert all_normal.study_finding == "normal"


@pytest.mark.parametrize("malignant", [False, True])
@pytest.mark.parametrize("mass", [False, True])
def test_lesion_adds_density_where_the_truth_says(malignant, mass):
    config = SynthConfig(difficulty=0.0)
    lesion = sample_lesion(np.random.default_rng(4), malignant, mass, 0.0)
    breast = sample_breast(np.random.default_rng(5), "R", lesion, config)
    with_lesion = render_view(np.random.default_rng(6), breast, "CC", config)
    without = render_view(np.random.default_rng(6), replace(breast, lesion=None), "CC", config)
    diff = with_lesion.pixels.astype(float) - without.pixels.astype(float)
    row, col = with_lesion.lesion_center
    r = with_lesion.lesion_radius_px + 2
    near = np.zeros_like(diff, dtype=bool)
    near[max(0, int(row - r)) : int(row + r) + 1, max(0, int(col - r)) : int(col + r) + 1] = True
    # Elsewhere only the quantum noise draw and the global display scaling differ (a few
    # values); at the lesion the tissue is denser by far more.
    strong = np.abs(diff) > 50
    assert strong.sum() >= 3
    assert near[strong].all()
    assert diff[strong].min() > 0  # denser, never lighter


def test_mlo_has_a_pectoral_muscle_and_cc_does_not():
    config = SynthConfig(rows=256, cols=208)
    breast = sample_breast(np.random.default_rng(1), "L", None, config)
    cc = render_view(np.random.default_rng(2), breast, "CC", config).pixels.astype(float)
    mlo = render_view(np.random.default_rng(2), breast, "MLO", config).pixels.astype(float)
    # Upper chest-wall corner: muscle (bright) in the MLO, air or thin edge in the CC.
    assert mlo[:20, :20].mean() > 2 * cc[:20, :20].mean()


def test_size_parsing():
    assert parse_size("small") == (256, 208)
    assert parse_size("full") == (3328, 2560)
    assert parse_size("512x416") == (512, 416)
    for bad in ("huge", "10x10", "99999x100"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError, match="difficulty"):
        SynthConfig(difficulty=1.5)


@pytest.mark.slow
def test_full_size_study_is_a_17_mb_valid_mammogram(tmp_path):
    write_dataset(tmp_path, 1, seed=1, size="full")
    path = sorted(tmp_path.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (3328, 2560)
    assert path.stat().st_size > 17_000_000
    assert dciodvfy_errors(path) == []


# --- styles, morphologies and the exactness of the lesion truth -------------------------------

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
        diff = _shown(ds) - _shown(ds0)
        assert _lesion_is_at(diff, truth, lesion_type, margin)


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


def _lesion_is_at(diff: np.ndarray, truth, lesion_type: str, margin: float) -> bool:
    """The difference stands out of the noise, all of its strong part lies within the
    lesion's radius (+ margin) of the truth and, for a mass or distortion, at the centre."""
    noise = 1.4826 * float(np.median(np.abs(diff)))
    peak = float(np.abs(diff).max())
    assert peak > 8 * noise and peak > 0, (truth, peak, noise)
    strong = np.argwhere(np.abs(diff) > max(0.25 * peak, 6 * noise))
    distance = np.hypot(strong[:, 0] - truth.lesion_row, strong[:, 1] - truth.lesion_col)
    assert distance.max() <= truth.lesion_radius_px + margin, (truth, distance.max())
    if not lesion_type.startswith("calc"):
        centre = diff[truth.lesion_row, truth.lesion_col]
        assert abs(centre) > 0.05 * peak, (truth, centre, peak)
        if lesion_type != "mass_lucent":
            assert centre > 0, (truth, centre)  # denser is brighter in presentation space
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
    mixed = read_labels(write_dataset(tmp_path / "m", 9, seed=4, size="64x52", style="mixed"))
    assert {r["style"] for r in mixed} == set(TRAINING_STYLES)
    for patient in {r["patient_id"] for r in mixed}:
        assert len({r["style"] for r in mixed if r["patient_id"] == patient}) == 1
    everything = write_dataset(
        tmp_path / "a", 12, seed=4, size="64x52", style="mixed", hold_out=None
    )
    assert {r["style"] for r in read_labels(everything)} == set(FAMILY_STYLES)
    other = write_dataset(tmp_path / "g", 9, seed=4, size="64x52", style="mixed", hold_out="gauss")
    assert "gauss" not in {r["style"] for r in read_labels(other)}


def test_mixed_sets_are_reproducible_and_prefixes(tmp_path):
    write_dataset(tmp_path / "a", 2, seed=6, size="64x52", style="mixed")
    write_dataset(tmp_path / "b", 3, seed=6, size="64x52", style="mixed")
    first = digest(tmp_path / "a" / "images")
    assert {k: v for k, v in digest(tmp_path / "b" / "images").items() if k in first} == first


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
