"""sgc_core.synth: valid DICOM (dciodvfy), reproducibility, labels, splits and the phantom."""

from __future__ import annotations

import csv
import hashlib
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest

from sgc_core.synth import (
    LABEL_COLUMNS,
    SynthConfig,
    generate_study,
    generate_study_with_truth,
    parse_size,
    write_dataset,
)
from sgc_core.synth.lesions import sample_lesion
from sgc_core.synth.phantom import render_view, sample_breast
from tests.conftest import require_binary


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
