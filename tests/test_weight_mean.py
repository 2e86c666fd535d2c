"""benchmarks/weight_mean.py on the bundled finder and candidate I's weights: the written model
loads (its sha256 checks), its tensors are the sources' mean, and inputs that cannot be
averaged are refused in one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import weight_mean
from sgc_core.checkpoint import load_model, save_model
from sgc_core.unet import build_score_model

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "sgc_core" / "models" / "sgc-lesion-mammo"
CANDIDATE_I = ROOT / "benchmarks" / "results" / "lesion_i" / "weights" / "sgc-lesion-mammo"


def test_the_mean_of_two_finders_loads_and_lies_between_them(tmp_path) -> None:
    out = tmp_path / "mean" / "sgc-lesion-mammo"
    weight_mean.main(
        ["--model", str(BUNDLED), "--model", str(CANDIDATE_I)]
        + ["--version", "9.9.9-mean", "--out", str(out)]
    )
    mean, card = load_model(out)
    a, b = load_model(BUNDLED)[0].state_dict(), load_model(CANDIDATE_I)[0].state_dict()
    for name, tensor in mean.state_dict().items():
        torch.testing.assert_close(tensor, (a[name] + b[name]) / 2)
    assert not torch.equal(mean.state_dict()["out.bias"], a["out.bias"])
    assert card["version"] == "9.9.9-mean"
    assert card["lesion"] == json.loads(Path(f"{CANDIDATE_I}.json").read_text())["lesion"]
    assert [s.split()[1] for s in card["weights_mean_of"]] == ["0.12.0", "0.13.0-i-cal"]


def test_one_model_is_refused(tmp_path) -> None:
    with pytest.raises(SystemExit, match="two or more models"):
        weight_mean.main(["--model", str(BUNDLED), "--version", "x", "--out", str(tmp_path / "m")])
    assert not list(tmp_path.iterdir())


def test_another_architecture_is_refused(tmp_path) -> None:
    _, card = load_model(BUNDLED)
    narrow = dict(card, architecture=dict(card["architecture"], width=8))
    save_model(tmp_path / "narrow", build_score_model(narrow["architecture"], card["sde"]), narrow)
    with pytest.raises(SystemExit, match="architectures differ"):
        weight_mean.main(
            ["--model", str(BUNDLED), "--model", str(tmp_path / "narrow")]
            + ["--version", "x", "--out", str(tmp_path / "out")]
        )
    assert not (tmp_path / "out.json").exists()


def test_a_missing_model_is_refused_in_one_line(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--model: model card .* not found"):
        weight_mean.main(
            ["--model", str(BUNDLED), "--model", str(tmp_path / "none")]
            + ["--version", "x", "--out", str(tmp_path / "out")]
        )
