"""sgc_core.preprocess: the DICOM grayscale pipeline, breast crop, flip and their errors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from sgc_core.pixels import presentation_values
from sgc_core.preprocess import (
    PreprocessConfig,
    PreprocessError,
    preprocess_dataset,
    preprocess_file,
)
from sgc_core.synth import SynthConfig, generate_study

CFG = PreprocessConfig(image_size=(64, 48))


@pytest.fixture(scope="module")
def study_m2() -> list[pydicom.Dataset]:
    return generate_study(11, SynthConfig(monochrome1_fraction=0.0, difficulty=0.2))


@pytest.fixture(scope="module")
def study_m1() -> list[pydicom.Dataset]:
    return generate_study(11, SynthConfig(monochrome1_fraction=1.0, difficulty=0.2))


def _roundtrip(ds: pydicom.Dataset, tmp_path: Path, name: str) -> pydicom.Dataset:
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def mirrored_right(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The same breast image mirrored and labelled as a right breast in the standard hanging."""
    out = copy.deepcopy(ds)
    out.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::-1]).tobytes()
    out.ImageLaterality = "R"
    out.PatientOrientation = ["P", "L"] if ds.ViewPosition == "CC" else ["P", "FL"]
    return out


@pytest.mark.parametrize("clahe", [False, True])
def test_monochrome1_and_monochrome2_encodings_give_the_same_tensor(study_m1, study_m2, clahe):
    config = PreprocessConfig(image_size=(64, 48), clahe=clahe)
    for ds1, ds2 in zip(study_m1, study_m2, strict=True):
        assert ds1.PhotometricInterpretation == "MONOCHROME1"
        assert ds2.PhotometricInterpretation == "MONOCHROME2"
        assert not np.array_equal(ds1.pixel_array, ds2.pixel_array)  # stored inverted
        t1, t2 = preprocess_dataset(ds1, config), preprocess_dataset(ds2, config)
        assert torch.equal(t1.tensor, t2.tensor)
        assert t1.bbox == t2.bbox


def test_monochrome1_is_inverted_to_bright_breast(study_m1):
    values = presentation_values(study_m1[1])  # L CC, chest wall at column 0
    middle = values[100:156]
    assert middle[:, :10].mean() > middle[:, -10:].mean() + 0.2  # breast bright, air dark


@pytest.mark.parametrize("view_index", [1, 3])  # L CC, L MLO
def test_left_and_mirrored_right_breast_give_equal_tensors(study_m2, view_index):
    left = study_m2[view_index]
    right = mirrored_right(left)
    pl, pr = preprocess_dataset(left, CFG), preprocess_dataset(right, CFG)
    assert torch.equal(pl.tensor, pr.tensor)
    assert (pl.flipped, pr.flipped) == (False, True)
    assert (pl.laterality, pr.laterality) == ("L", "R")
    cols = left.Columns
    r0, c0, r1, c1 = pl.bbox
    assert pr.bbox == (r0, cols - c1, r1, cols - c0)  # original coordinates, mirrored box
    # Without the flip the right breast stays mirrored: the model would see two geometries.
    no_flip = PreprocessConfig(image_size=(64, 48), flip_to=None)
    assert not torch.equal(
        preprocess_dataset(left, no_flip).tensor, preprocess_dataset(right, no_flip).tensor
    )


def test_flip_falls_back_to_laterality_then_to_the_image(study_m2):
    right = mirrored_right(study_m2[1])
    del right.PatientOrientation
    assert preprocess_dataset(right, CFG).flipped
    del right.ImageLaterality
    assert preprocess_dataset(right, CFG).flipped  # the chest wall (bright side) is on the right


@pytest.mark.parametrize(
    "syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless, DeflatedExplicitVRLittleEndian]
)
def test_lossless_transfer_syntaxes_equal_uncompressed(study_m2, tmp_path, syntax):
    plain = _roundtrip(copy.deepcopy(study_m2[2]), tmp_path, "plain.dcm")
    encoded = copy.deepcopy(study_m2[2])
    if syntax == DeflatedExplicitVRLittleEndian:
        encoded.file_meta.TransferSyntaxUID = syntax
    else:
        encoded.compress(syntax, generate_instance_uid=False)
    encoded = _roundtrip(encoded, tmp_path, "encoded.dcm")
    assert encoded.file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(encoded.pixel_array, plain.pixel_array)
    assert torch.equal(
        preprocess_dataset(encoded, CFG).tensor, preprocess_dataset(plain, CFG).tensor
    )


def test_output_shape_range_and_channels(study_m2):
    out = preprocess_dataset(study_m2[0], PreprocessConfig(image_size=32, channels=3))
    assert out.tensor.shape == (3, 32, 32) and out.tensor.dtype == torch.float32
    assert out.tensor.min() >= -1.0 and out.tensor.max() <= 1.0 and out.tensor.max() > 0.0
    assert torch.equal(out.tensor[0], out.tensor[2])
    unit = preprocess_dataset(study_m2[0], PreprocessConfig(image_size=32, scaling="[0,1]"))
    assert unit.tensor.min() >= 0.0 and unit.tensor.max() <= 1.0
    assert torch.allclose(unit.tensor * 2 - 1, out.tensor[:1], atol=1e-6)
    assert (out.view, out.modality, out.laterality) == ("CC", "MG", "R")


def test_crop_ignores_a_burnt_in_marker_in_the_background(study_m2):
    ds = study_m2[1]  # L CC: background on the right
    base = preprocess_dataset(ds, CFG)
    marked = copy.deepcopy(ds)
    pixels = ds.pixel_array.copy()
    pixels[5:12, -12:-5] = 2**ds.BitsStored - 1  # a bright "L" marker in the air
    marked.PixelData = pixels.tobytes()
    out = preprocess_dataset(marked, CFG)
    assert out.bbox == base.bbox
    assert torch.equal(out.tensor, base.tensor)
    r0, c0, r1, c1 = base.bbox
    assert c0 == 0 and c1 < ds.Columns - 12  # chest wall at column 0, air cropped away


def test_view_falls_back_to_the_view_code_sequence(study_m2):
    ds = copy.deepcopy(study_m2[3])
    del ds.ViewPosition
    assert preprocess_dataset(ds, CFG).view == "MLO"


def test_voi_lut_sequence_and_minmax(study_m2):
    ds = copy.deepcopy(study_m2[0])
    window = presentation_values(ds, "window")
    minmax = presentation_values(ds, "minmax")
    assert not np.allclose(window, minmax)
    # A VOI LUT Sequence that reproduces the linear window must give the window's image.
    bits = ds.BitsStored
    x = np.arange(2**bits)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    table = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    item = pydicom.Dataset()
    item.LUTDescriptor = [2**bits, 0, 16]
    item.LUTData = np.rint(table * 65535).astype("<u2").tobytes()
    ds.VOILUTSequence = [item]
    lut = presentation_values(ds, "auto")
    assert np.abs(lut - window).max() < 1e-4


def test_config_round_trips_and_rejects_unknown_or_bad_values():
    config = PreprocessConfig(image_size=(96, 80), channels=3, clahe=True, modality_policy="refuse")
    data = config.to_dict()
    assert data["image_size"] == [96, 80]
    assert PreprocessConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown preprocessing parameters"):
        PreprocessConfig.from_dict({**data, "gamma": 2.0})
    for bad in ({"channels": 2}, {"scaling": "[0,255]"}, {"voi": "magic"}, {"image_size": 4}):
        with pytest.raises(ValueError):
            PreprocessConfig(**bad)


def test_no_pixel_data_is_a_clear_error(study_m2):
    ds = copy.deepcopy(study_m2[0])
    del ds.PixelData
    with pytest.raises(PreprocessError, match="no pixel data"):
        preprocess_dataset(ds, CFG)


def test_unsupported_photometric_interpretation_is_a_clear_error():
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm"))
    with pytest.raises(PreprocessError, match="unsupported photometric interpretation RGB"):
        preprocess_dataset(ds, PreprocessConfig(image_size=32))


def test_zero_size_image_is_a_clear_error(study_m2):
    ds = copy.deepcopy(study_m2[0])
    ds.Rows = 0
    ds.PixelData = b""
    with pytest.raises(PreprocessError, match="zero-size image"):
        preprocess_dataset(ds, CFG)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_non_mammography_is_refused_or_marked_by_policy(name):
    path = get_testdata_file(name)
    with pytest.raises(PreprocessError, match="not mammography"):
        preprocess_file(path, PreprocessConfig(image_size=32, modality_policy="refuse"))
    out = preprocess_file(path, PreprocessConfig(image_size=32, modality_policy="ood"))
    assert out.modality in ("CT", "MR")
    assert out.tensor.shape == (1, 32, 32) and torch.isfinite(out.tensor).all()
    assert not out.flipped


def test_blank_image_passes_through_without_a_breast(study_m2):
    ds = copy.deepcopy(study_m2[0])
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint16).tobytes()
    out = preprocess_dataset(ds, CFG)
    assert not out.breast_found
    assert out.bbox == (0, 0, ds.Rows, ds.Columns)
    assert torch.all(out.tensor == -1.0)


def test_unreadable_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"not dicom at all")
    with pytest.raises(PreprocessError, match="not a readable DICOM file"):
        preprocess_file(path, CFG)
