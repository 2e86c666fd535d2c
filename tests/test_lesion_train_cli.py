"""`sgc train-lesion`: a tiny run end to end, and crops or labels that do not belong together
refused with one line and a non-zero exit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sgc_core.datasets.crops import CropRecipe, CropSet
from sgc_node.cli import cli


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    res = CliRunner().invoke(
        cli,
        ["synth", "--studies", "10", "--out", str(out), "--normal-fraction", "0.3", "--seed", "3"],
    )
    assert res.exit_code == 0, res.output
    return out


def _rewrite(src: Path, dst: Path, change) -> Path:
    dst.mkdir()
    (dst / "images").symlink_to(src / "images")
    rows = list(csv.DictReader((src / "labels.csv").open()))
    change(rows)
    with (dst / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def _train(data: Path, out: Path, *extra: str):
    return CliRunner().invoke(
        cli,
        [
            "train-lesion",
            str(data),
            "--out",
            str(out),
            "--steps",
            "3",
            "--width",
            "8",
            "--quiet",
            "--k-fine",
            "2",
            *extra,
        ],
    )


def test_tiny_training_writes_a_lesion_card(synth: Path, tmp_path: Path) -> None:
    crops = str(tmp_path / "crops.npz")
    res = _train(
        synth,
        tmp_path / "m",
        "--crops",
        crops,
        "--train-t-max",
        "0.35",
        "--ce-weight",
        "0.5",
        "--ce-t-max",
        "0.1",
    )
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "m.json").read_text())
    lesion = card["lesion"]
    assert card["classes"] == ["normal", "benign", "malignant"]
    # Trained on t <= 0.35 only, so the calibrated scan band lies inside it.
    assert card["training"]["config"]["t_max"] == 0.35
    assert card["training"]["config"]["ce_weight"] == 0.5
    assert card["training"]["config"]["ce_t_max"] == 0.1
    assert 0 < lesion["t_range"][0] < lesion["t_range"][1] <= 0.35
    assert lesion["temperature_coarse"] > 0 and 0 <= lesion["operating_point"] <= 1
    assert (tmp_path / "crops.npz").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows[0].update(finding="suspicious"), "finding 'suspicious'"),
        (lambda rows: rows[1].update(finding="malignant", lesion_row=""), "numeric centre"),
        (lambda rows: rows[2].update(path="images/nope.dcm"), "does not exist"),
        (lambda rows: rows[3].update(split="holdout"), "split 'holdout'"),
    ],
)
def test_bad_labels_are_refused_in_one_line(synth, tmp_path, change, message) -> None:
    data = _rewrite(synth, tmp_path / "bad", change)
    res = _train(data, tmp_path / "m")
    assert res.exit_code == 1
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (("--train-t-max", "1.5"), "t_max"),
        (("--ce-weight", "-1"), "ce_weight"),
        (("--ce-t-max", "0.9"), "ce_t_max"),  # above the default --train-t-max 0.5
    ],
)
def test_a_bad_training_setting_is_refused_in_one_line(synth, tmp_path, option, words) -> None:
    res = _train(synth, tmp_path / "m", *option)
    assert res.exit_code == 1 and words in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "m.json").exists()


def test_crops_whose_labels_do_not_match_are_refused(synth: Path, tmp_path: Path) -> None:
    bad = CropSet(
        images=np.zeros((4, 64, 64), np.uint8),
        labels=np.zeros(3, np.int64),
        splits=np.array(["train"] * 4),
        styles=np.array([""] * 4),
        recipe=CropRecipe(),
    )
    path = tmp_path / "bad.npz"
    bad.save(path)
    res = _train(synth, tmp_path / "m", "--crops", str(path))
    assert res.exit_code == 1 and "crops and labels do not match" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_crops_with_one_class_are_refused(synth: Path, tmp_path: Path) -> None:
    one = CropSet(
        images=np.zeros((4, 64, 64), np.uint8),
        labels=np.zeros(4, np.int64),
        splits=np.array(["train", "train", "val", "val"]),
        styles=np.array([""] * 4),
        recipe=CropRecipe(),
    )
    path = tmp_path / "one.npz"
    one.save(path)
    res = _train(synth, tmp_path / "m", "--crops", str(path))
    assert res.exit_code == 1 and "1 class(es)" in res.output
