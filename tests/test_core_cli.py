"""`sgc train` and `sgc evaluate` end to end on a small PNG folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from sgc_node.cli import cli
from tests.test_core_train import toy_dataset


def _write_pngs(root: Path, n: int = 48) -> None:
    ds = toy_dataset(n)
    for i in range(n):
        x, lab = ds[i]
        folder = root / ds.class_names[lab]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8)).save(folder / f"{i:03d}.png")


def test_train_then_evaluate(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = tmp_path / "data"
    _write_pngs(data)
    runner = CliRunner()
    out = tmp_path / "models" / "toy"
    res = runner.invoke(
        cli,
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(out),
            "--image-size",
            "16",
            "--width",
            "8",
            "--steps",
            "20",
            "--batch-size",
            "16",
            "--lr",
            "2e-3",
            "--k",
            "4",
            "--quiet",
            "--no-flip",
            "--balanced",
        ],
    )
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "models" / "toy.json").read_text())
    assert card["classes"] == ["benign", "malignant"]
    assert card["preprocess"]["scaling"] == "[0,1]" and card["preprocess"]["image_size"] == [16, 16]
    assert card["training"]["config"]["balanced"] is True
    report = tmp_path / "report"
    res = runner.invoke(
        cli, ["evaluate", "--model", str(out), "--data", str(data), "--out", str(report)]
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((report / "metrics.json").read_text())
    for key in (
        "accuracy",
        "balanced_accuracy",
        "auc",
        "sensitivity",
        "specificity",
        "f1",
        "ece",
        "confusion_matrix",
    ):
        assert key in metrics
    assert sum(map(sum, metrics["confusion_matrix"])) == 48
    assert (report / "roc.png").stat().st_size > 1000
    assert (report / "reliability.png").stat().st_size > 1000


def test_train_reports_bad_data_clearly(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    res = CliRunner().invoke(
        cli, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--steps", "1"]
    )
    assert res.exit_code != 0
    assert "at least two class folders" in res.output


def test_train_refuses_a_list_naming_an_image_that_is_not_there(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "d", 2)
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(tmp_path.rglob("*.png"))]
    (tmp_path / "list.csv").write_text("\n".join(["path,label", *rows, "d/gone.dcm,benign", ""]))
    res = CliRunner().invoke(
        cli, ["train", "--data", str(tmp_path / "list.csv"), "--out", str(tmp_path / "m")]
    )
    assert res.exit_code == 1, res.output
    assert res.output.strip().splitlines() == [
        f"Error: {tmp_path / 'list.csv'}:{len(rows) + 2}: image d/gone.dcm does not exist"
    ]
    assert not (tmp_path / "m").exists()


def test_evaluate_reports_a_missing_model(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "d", 4)
    res = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--model",
            str(tmp_path / "nope"),
            "--data",
            str(tmp_path / "d"),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code != 0
    assert "not found" in res.output
