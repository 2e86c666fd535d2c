"""`sgc train` / `sgc evaluate` on a mammography layout: official splits, card preprocessing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sgc_core.datasets.formats import detect_format


def _sgc(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    return subprocess.run(
        [sys.executable, "-m", "sgc_node", *args], capture_output=True, text=True, env=env
    )


def test_synth_then_train_then_evaluate_uses_the_layouts_splits(tmp_path: Path) -> None:
    data = tmp_path / "synth"
    out = _sgc("synth", "--studies", "8", "--out", str(data), "--seed", "3", "--size", "small")
    assert out.returncode == 0, out.stderr
    assert detect_format(data) == "synthetic"
    rows = (data / "labels.csv").read_text().splitlines()[1:]
    n = {s: sum(r.endswith(f",{s}") for r in rows) for s in ("train", "val", "test")}

    model = tmp_path / "m"
    out = _sgc(
        "train",
        "--data",
        str(data),
        "--out",
        str(model),
        "--image-size",
        "16",
        "--width",
        "8",
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--k",
        "2",
        "--quiet",
        "--clahe",
    )
    assert out.returncode == 0, out.stderr
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["preprocess"]["clahe"] is True and card["preprocess"]["image_size"] in (
        16,
        [16, 16],
    )
    assert sum(card["training"]["class_counts"].values()) == n["train"]
    assert card["training"]["data"].startswith("synthetic:")

    out = _sgc(
        "evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "ev")
    )
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == n["test"]


def test_a_named_layout_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    out = _sgc(
        "train", "--data", str(tmp_path), "--format", "vindr-mammo", "--out", str(tmp_path / "m")
    )
    assert out.returncode == 1
    assert "breast-level_annotations.csv" in out.stderr and "Traceback" not in out.stderr
