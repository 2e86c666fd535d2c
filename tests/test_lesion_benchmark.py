"""The crop-level lesion benchmark (benchmarks/lesion_quality.py) on a tiny crop set: every N
has both models' metrics under one budget, and the held-out style is never trained on."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.lesion_quality import benchmark_parts, load_crops, main, training_sizes
from sgc_core.datasets.crops import CROP_CLASSES, CropRecipe, CropSet

STYLES = ("gauss", "lumpy", "ducts")
PER_CELL = {"train": 4, "val": 2, "test": 2}  # crops per (split, style, class)


def tiny_crops(size: int = 16) -> CropSet:
    """Noise crops; lesion crops carry a bright disc, larger when malignant (learnable, so the
    metrics are numbers, not n/a)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] - size / 2
    images, labels, splits, styles = [], [], [], []
    for split, per in PER_CELL.items():
        for style in STYLES:
            for label, radius in enumerate((0, 3, 6)):
                for _ in range(per):
                    img = rng.normal(90, 15, (size, size)) + 120 * (xx**2 + yy**2 < radius**2)
                    images.append(np.clip(img, 0, 255).astype(np.uint8))
                    labels.append(label)
                    splits.append(split)
                    styles.append(style)
    return CropSet(
        np.stack(images),
        np.array(labels, dtype=np.int64),
        np.array(splits),
        np.array(styles),
        CropRecipe(crop=size),
    )


@pytest.fixture
def crop_file(tmp_path: Path) -> Path:
    path = tmp_path / "crops.npz"
    tiny_crops().save(path)
    return path


TINY = ["--steps", "5", "--batch", "4", "--width", "8", "--k", "2", "--threads", "1"]


def test_every_n_has_both_models_metrics_under_one_budget(crop_file, tmp_path, capsys):
    out = tmp_path / "result.json"
    argv = ["--crops", str(crop_file), "--ns", "12,full", "--out", str(out), *TINY]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    full = 2 * 3 * PER_CELL["train"]  # the base styles' training crops (ducts held out)
    rows = {(r["n"], r["model"]): r for r in report["results"]}
    assert set(rows) == {(n, m) for n in (12, full) for m in ("sgc", "cnn")}
    for (_n, _m), r in rows.items():
        for metric in ("auc_malignant", "auc_lesion", "auc_malignant_vs_benign", "accuracy"):
            assert isinstance(r["test"][metric], float), (r["model"], metric)
        assert r["test"]["crops"] == 2 * 3 * PER_CELL["test"]
        assert (r["steps"], r["batch"], r["budget_images"]) == (5, 4, 20)
    assert [row["n"] for row in report["ratios"]] == [12, full]
    for row in report["ratios"]:
        sgc, cnn = rows[(row["n"], "sgc")]["test"], rows[(row["n"], "cnn")]["test"]
        assert row["accuracy_difference"] == pytest.approx(sgc["accuracy"] - cnn["accuracy"])
    shift = report["shift"]
    assert shift["held_out"] == "ducts" and shift["n"] == full
    for model in ("sgc", "cnn"):
        s = shift[model]
        assert s["held_out"]["crops"] == 3 * PER_CELL["test"]
        drop = s["base"]["auc_malignant"] - s["held_out"]["auc_malignant"]
        assert s["drop"]["auc_malignant"] == pytest.approx(drop)
    printed = capsys.readouterr().out
    assert "SGC / CNN on base-style test crops" in printed and "shift to style 'ducts'" in printed


def test_one_model_alone_runs_every_n_without_a_ratio(crop_file, tmp_path, capsys):
    """--models cnn: the learning curve of one model (the SGC costs 10x more per step), no
    SGC / CNN line where no SGC ran, and the shift of the one model."""
    out = tmp_path / "result.json"
    argv = ["--crops", str(crop_file), "--ns", "12,full", "--models", "cnn", "--out", str(out)]
    assert main([*argv, *TINY]) == 0
    report = json.loads(out.read_text())
    assert [(r["n"], r["model"]) for r in report["results"]] == [(12, "cnn"), (24, "cnn")]
    assert report["ratios"] == []
    assert set(report["shift"]) == {"held_out", "n", "cnn"}
    assert "cnn:" in capsys.readouterr().out


def test_a_saved_sgc_is_scored_with_the_budget_of_its_card(crop_file, tmp_path):
    """--sgc-weights: a network trained elsewhere on the same training crops is scored like a
    fresh one (validation temperature, test metrics) and reports its own steps and batch."""
    from benchmarks.lesion_quality import benchmark_parts
    from sgc_core.train import TrainConfig, train_and_export

    parts = benchmark_parts(CropSet.load(crop_file), "ducts")
    cfg = TrainConfig(image_size=16, width=8, steps=3, batch_size=4, balanced=True)
    model = tmp_path / "finder"
    train_and_export(
        cfg, parts["train"].dataset(), model, val_dataset=parts["val"].dataset(), progress=False
    )
    out = tmp_path / "result.json"
    argv = ["--crops", str(crop_file), "--ns", "full", "--models", "sgc", "--out", str(out)]
    assert main([*argv, "--sgc-weights", str(model), *TINY]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert (row["steps"], row["batch"], row["width"]) == (3, 4, 8)  # the card's, not --steps 5
    assert isinstance(row["test"]["auc_malignant"], float)


@pytest.mark.parametrize("extra", [["--ns", "12,full"], ["--models", "cnn"], []])
def test_saved_sgc_weights_need_one_n_the_sgc_and_a_card(extra, crop_file, tmp_path, capsys):
    weights = tmp_path / "absent" if not extra else crop_file.with_suffix("")
    if extra:
        crop_file.with_suffix(".json").write_text("{}")
    argv = ["--crops", str(crop_file), "--sgc-weights", str(weights), "--ns", "full", *extra]
    with pytest.raises(SystemExit) as exc:
        main([*argv, *TINY])
    assert exc.value.code == 2
    assert "--sgc-weights" in capsys.readouterr().err


@pytest.mark.parametrize("names", ["gan", "", "sgc,vit"])
def test_unknown_models_are_refused(names, crop_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--crops", str(crop_file), "--models", names, *TINY])
    assert exc.value.code == 2
    assert "models must be among" in capsys.readouterr().err


def test_held_out_style_is_in_no_training_or_validation_part():
    crops = tiny_crops()
    parts = benchmark_parts(crops, "ducts")
    for name in ("train", "val", "test"):
        assert "ducts" not in set(parts[name].styles.tolist())
        assert set(parts[name].splits.tolist()) == {name}
    assert set(parts["test_held"].styles.tolist()) == {"ducts"}
    assert set(parts["test_held"].splits.tolist()) == {"test"}
    assert len(parts["train"].labels) == 2 * 3 * PER_CELL["train"]
    assert len(parts["train"].dataset()) == len(parts["train"].labels)


def test_without_a_held_out_style_training_sees_every_style():
    parts = benchmark_parts(tiny_crops(), None)
    assert set(parts["train"].styles.tolist()) == set(STYLES)
    assert "test_held" not in parts


def test_a_held_out_style_missing_from_the_crops_is_a_clear_error(crop_file, capsys):
    assert main(["--crops", str(crop_file), "--held-out", "ligament", *TINY]) == 2
    err = capsys.readouterr().err
    assert "no test_held crops" in err and "--hold-out none" in err


def test_no_crops_and_no_data_is_a_clear_error(tmp_path, capsys):
    assert main(["--crops", str(tmp_path / "absent.npz"), *TINY]) == 2
    assert "absent.npz does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--t-range", "0.5,0.1"], ["--steps", "0"], ["--k", "0"]])
def test_bad_settings_are_refused(argv, crop_file):
    with pytest.raises(SystemExit) as exc:
        main(["--crops", str(crop_file), *argv])
    assert exc.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_refused(crop_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--crops", str(crop_file), "--device", "cuda", *TINY])
    assert exc.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_training_sizes_cap_at_the_split_and_refuse_nonsense():
    assert training_sizes("100,300,full", 250) == [100, 250]
    with pytest.raises(ValueError, match="neither an integer"):
        training_sizes("100,all", 250)
    with pytest.raises(ValueError, match="at least 2"):
        training_sizes("1", 250)


def test_crops_are_cut_from_a_synth_folder_once_and_keep_their_styles(tmp_path):
    from sgc_core.synth import write_dataset

    folder = tmp_path / "synth"
    write_dataset(folder, 3, seed=1, size="small", style="mixed", hold_out=None)
    cache = tmp_path / "crops.npz"
    built = load_crops(cache, folder, seed=0, workers=1)
    assert cache.is_file()
    assert len(built.labels) > 0 and set(built.labels.tolist()) <= set(range(len(CROP_CLASSES)))
    with (folder / "labels.csv").open(newline="") as fh:
        written = {row["style"] for row in csv.DictReader(fh)}
    assert set(built.styles.tolist()) == written
    again = load_crops(cache, tmp_path / "gone", seed=0, workers=1)  # the cache, not the folder
    assert np.array_equal(again.images, built.images)
    assert np.array_equal(again.styles, built.styles)


def test_redraw_features_compare_each_view_with_the_other_breast(tmp_path):
    """benchmarks/lesion_redraw: the left-right feature subtracts the same view of the other
    breast; the view-median one the view's own median window; the printout reads saved rows."""
    from benchmarks.lesion_redraw import _auc_se, features, report

    def row(study, name, top, windows, finding):
        path = f"/d/images/{study}/{name}.dcm"
        row = {"path": path, "finding": finding, "top": top, "coarse_mal_logit": windows}
        return row | {"p": 1 / (1 + math.exp(-top))}

    rows = [
        row("S1", "L_CC", 2.0, [0.0, 1.0, 5.0], "malignant"),
        row("S1", "R_CC", 0.5, [-1.0, -1.0, 0.0], "normal"),
        row("S2", "L_CC", 1.0, [1.0, 1.0, 1.0], "benign"),
    ]
    f = features(rows)
    assert f["contra"].tolist() == [1.5, -1.5, 0.0]  # S2 has no right view: compared to itself
    assert f["top - view median"].tolist() == [1.0, 1.5, 0.0]
    assert f["contra, median-normalised"].tolist() == [-0.5, 0.5, 0.0]
    assert _auc_se(0.5, 50, 50) == pytest.approx(0.058, abs=0.002)
    for name in ("select", "report", "held"):
        (tmp_path / f"rows-{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = report(tmp_path)
    assert summary["held"]["contra"]["auc"] == 1.0
    normal = summary["held"]["by_finding"]["normal"]  # the one normal row, R_CC of S1
    assert normal["views"] == 1 and normal["mean_p"] == pytest.approx(0.622, abs=0.001)
    assert (normal["median_window_max"], normal["median_window_median"]) == (0.0, -1.0)
    assert "top_finding_hit" not in summary["held"]  # rows from before the field: no count
    rows[0]["top_hit"] = True
    (tmp_path / "rows-held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert report(tmp_path)["held"]["top_finding_hit"] == "1/1"
