"""The field-of-view benchmark (benchmarks/lesion_field.py) on a tiny synth folder: each field
cuts crops of its own size and spacing from the same views, the lesion-kind test sets split
the test lesions, both models get one budget, and bad settings are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.lesion_field import field_crops, lesion_kinds, main, parse_field
from benchmarks.lesion_quality import BenchmarkError
from sgc_core.datasets.crops import read_synthetic_annotations


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from sgc_core.synth import write_dataset

    out = tmp_path_factory.mktemp("field") / "synth"
    write_dataset(out, 8, seed=3, size="small", style="mixed", normal_fraction=0.0, workers=1)
    return out


def test_fields_cut_their_own_size_from_the_same_views(folder):
    small = field_crops(folder, 32, 0.4, workers=1, seed=0)
    wide = field_crops(folder, 64, 0.8, workers=1, seed=0)
    assert small["train"].images.shape[1:] == (32, 32)
    assert wide["train"].images.shape[1:] == (64, 64)
    for split in ("train", "val", "test"):  # same views, two crops per lesion in each field
        lesion = small[split].labels[small[split].labels != 0]
        assert np.array_equal(lesion, wide[split].labels[wide[split].labels != 0])
        assert len(lesion) > 0


def test_the_lesion_kinds_split_the_test_lesions(folder):
    parts = field_crops(folder, 32, 0.4, workers=1, seed=0)
    kinds = lesion_kinds(folder)
    tests = [n for n in read_synthetic_annotations(folder) if n.split == "test"]
    assert {kinds[n.path] for n in tests} <= {"mass", "calcification"}
    lesion = lambda p: int((p.labels != 0).sum())  # noqa: E731
    assert lesion(parts["test_mass"]) + lesion(parts["test_calcification"]) == lesion(parts["test"])


def test_every_field_has_both_models_under_one_budget(folder, tmp_path, capsys):
    out = tmp_path / "field.json"
    argv = ["--data", str(folder), "--fields", "32@0.4,32@0.8", "--steps", "3", "--batch", "4"]
    argv += ["--width", "8", "--k", "1", "--val-max", "12", "--test-max", "12", "--workers", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["field"], r["model"]) for r in rows] == [
        (f, m) for f in ("32@0.4", "32@0.8") for m in ("sgc", "cnn", "sgc/cnn")
    ]
    models = [r for r in rows if r["model"] != "sgc/cnn"]
    for r in models:
        assert (r["steps"], r["batch"]) == (3, 4)
        assert r["field_mm"] == pytest.approx(32 * r["spacing_mm"])
        assert r["test"]["crops"] <= 12
    by = {(r["field"], r["model"]): r for r in rows}
    for field in ("32@0.4", "32@0.8"):  # the peer's ratio, from the same run
        sgc, cnn = by[(field, "sgc")]["test"], by[(field, "cnn")]["test"]
        ratio = by[(field, "sgc/cnn")]
        assert ratio["auc_lesion_ratio"] == pytest.approx(sgc["auc_lesion"] / cnn["auc_lesion"])
    printed = capsys.readouterr().out
    assert "32@0.8 SGC / CNN, AUC ratio" in printed


@pytest.mark.parametrize("text", ["64x0.4", "60@0.4", "64@0", "@"])
def test_a_malformed_field_is_refused(text):
    with pytest.raises(BenchmarkError, match="field"):
        parse_field(text)


def test_a_malformed_field_exits_with_a_message(folder, capsys):
    assert main(["--data", str(folder), "--fields", "64x0.4"]) == 2
    assert "CROP@SPACING" in capsys.readouterr().err


def test_a_folder_without_labels_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(tmp_path)])
    assert exc.value.code == 2
    assert "labels.csv" in capsys.readouterr().err


def test_an_unknown_model_is_refused(folder, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--data", str(folder), "--models", "sgc,gan"])
    assert exc.value.code == 2
    assert "--models" in capsys.readouterr().err
