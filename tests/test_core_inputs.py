"""Bad input gets a clear error: images, data sets, model files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sgc_core.checkpoint import ModelFileError, load_model, save_model
from sgc_core.datasets import CsvDataset, FolderDataset, open_dataset
from sgc_core.inference import Classifier, load_classifier
from sgc_core.sde import VPSDE
from sgc_core.unet import architecture_spec, build_score_model


@pytest.fixture()
def model_files(tmp_path: Path) -> Path:
    arch = architecture_spec("default", 2, 1, 16, 8)
    sde = VPSDE().to_dict()
    torch.manual_seed(0)
    model = build_score_model(arch, sde)
    card = {
        "name": "tiny",
        "version": "1",
        "classes": ["benign", "malignant"],
        "positive_class": "malignant",
        "image_size": 16,
        "channels": 1,
        "sde": sde,
        "architecture": arch,
        "calibration": {"temperature": 1.0, "priors": [0.5, 0.5]},
        "operating_point": {"threshold": 0.5},
        "ood": {"score": "bits_per_dim", "threshold": 100.0, "fpr": 0.05},
        "estimator": {"k": 4},
    }
    save_model(tmp_path / "tiny", model, card)
    return tmp_path / "tiny"


def test_classify_rejects_wrong_shapes_and_values(model_files: Path) -> None:
    clf = load_classifier(model_files)
    with pytest.raises(ValueError, match="expects 16x16"):
        clf.classify(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="1 channel"):
        clf.classify(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        clf.classify(torch.rand(1, 16, 16))
    bad = torch.rand(2, 1, 16, 16)
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        clf.classify(bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clf.classify(torch.rand(1, 1, 16, 16) * 255)
    ok = clf.classify(torch.rand(2, 1, 16, 16))
    assert len(ok) == 2 and ok[0].method == "elbo-uniform-stratified-k4"


def test_input_range_follows_the_card(model_files: Path) -> None:
    model, card = load_model(model_files)
    card["input_range"] = [-1.0, 1.0]
    clf = Classifier(model, card)
    x01 = torch.rand(1, 1, 16, 16)
    a = clf.classify(x01 * 2 - 1)[0]
    b = Classifier(model, dict(card, input_range=[0.0, 1.0])).classify(x01)[0]
    assert a.log_likelihoods == pytest.approx(b.log_likelihoods)


def test_corrupt_weights_are_refused(model_files: Path) -> None:
    weights = model_files.with_name("tiny.safetensors")
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_classifier(model_files)


def test_card_that_does_not_match_the_weights_is_refused(model_files: Path) -> None:
    card_path = model_files.with_name("tiny.json")
    card = json.loads(card_path.read_text())
    card["architecture"]["width"] = 16
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="do not match the card's architecture"):
        load_classifier(model_files)


def test_missing_or_broken_card(model_files: Path) -> None:
    card_path = model_files.with_name("tiny.json")
    card_path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_classifier(model_files)
    card_path.write_text(json.dumps({"name": "x"}))
    with pytest.raises(ModelFileError, match="lacks"):
        load_classifier(model_files)
    card_path.unlink()
    with pytest.raises(ModelFileError, match="not found"):
        load_classifier(model_files)


def test_unknown_estimator_settings_are_refused(model_files: Path) -> None:
    with pytest.raises(ValueError, match="unknown estimator method"):
        load_classifier(model_files, estimator={"method": "magic"})
    with pytest.raises(ValueError, match="unknown estimator settings"):
        load_classifier(model_files, estimator={"kk": 3})


def _png(path: Path, value: int, size: int = 20, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size, size), value, dtype=np.uint16 if mode == "I;16" else np.uint8)
    Image.fromarray(arr).save(path)


def test_folder_and_csv_loaders(tmp_path: Path) -> None:
    _png(tmp_path / "benign" / "a.png", 0)
    _png(tmp_path / "benign" / "b.png", 255)
    _png(tmp_path / "malignant" / "c.png", 128)
    ds = FolderDataset(tmp_path, image_size=8, channels=3)
    assert ds.class_names == ["benign", "malignant"]
    assert ds.labels == [0, 0, 1]
    x, y = ds[1]
    assert x.shape == (3, 8, 8) and y == 0 and float(x.min()) == pytest.approx(1.0)
    (tmp_path / "list.csv").write_text(
        "path,label\nbenign/a.png,benign\nmalignant/c.png,malignant\n"
    )
    cds = open_dataset(tmp_path / "list.csv", 8)
    assert isinstance(cds, CsvDataset) and cds.labels == [0, 1]
    assert float(cds[1][0].mean()) == pytest.approx(128 / 255, abs=1e-3)


def test_sixteen_bit_png_is_scaled_by_its_depth(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png", 65535, mode="I;16")
    _png(tmp_path / "b" / "y.png", 0)
    ds = FolderDataset(tmp_path, 8)
    assert float(ds[0][0].mean()) == pytest.approx(1.0)


def test_unknown_class_names_are_refused(tmp_path: Path) -> None:
    _png(tmp_path / "benign" / "a.png", 0)
    _png(tmp_path / "malignant" / "c.png", 128)
    (tmp_path / "list.csv").write_text("path,label\nbenign/a.png,benign\nmalignant/c.png,cancer\n")
    with pytest.raises(ValueError, match=r"list.csv:3: unknown class 'cancer'"):
        CsvDataset(tmp_path / "list.csv", 8, class_names=["benign", "malignant"])
    _png(tmp_path / "normal" / "d.png", 1)
    with pytest.raises(ValueError, match=r"unknown class folder\(s\) \['normal'\]"):
        FolderDataset(tmp_path, 8, class_names=["benign", "malignant"])
    (tmp_path / "bad.csv").write_text("file,class\nx,y\n")
    with pytest.raises(ValueError, match="path,label"):
        CsvDataset(tmp_path / "bad.csv", 8)


def test_dicom_files_go_through_the_callers_transform(tmp_path: Path) -> None:
    (tmp_path / "benign").mkdir()
    (tmp_path / "malignant").mkdir()
    (tmp_path / "benign" / "a.dcm").write_bytes(b"x")
    (tmp_path / "malignant" / "b.dcm").write_bytes(b"y")
    with pytest.raises(ValueError, match="need a transform"):
        FolderDataset(tmp_path, 8)
    seen: list[str] = []

    def transform(path: Path) -> torch.Tensor:
        seen.append(path.name)
        return torch.full((1, 8, 8), 0.25)

    ds = FolderDataset(tmp_path, 8, channels=3, transform=transform)
    x, y = ds[1]
    assert seen == ["b.dcm"] and y == 1 and x.shape == (3, 8, 8)
    bad = FolderDataset(tmp_path, 16, transform=transform)
    with pytest.raises(ValueError, match=r"expected \(1, 16, 16\)"):
        bad[0]
