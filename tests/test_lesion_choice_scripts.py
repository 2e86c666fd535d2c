"""The lesion finder's choice scripts (benchmarks/lesion_curve.py, lesion_select.py): the AUCs
they print rank by the class the column names, and both scripts answer --help."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import lesion_curve, lesion_select
from benchmarks.lesion_report import BENIGN, MALIGNANT, NORMAL


def test_crop_aucs_rank_by_the_named_class() -> None:
    labels = np.array([NORMAL, NORMAL, BENIGN, BENIGN, MALIGNANT, MALIGNANT])
    scores = np.full((6, 3), -10.0)
    scores[np.arange(6), labels] = 0.0  # each crop's own class scores highest
    assert lesion_curve.aucs(scores, labels) == {
        "malignant_vs_rest": 1.0,
        "lesion_vs_normal": 1.0,
        "malignant_vs_benign": 1.0,
    }
    swapped = scores.copy()
    swapped[:, [BENIGN, MALIGNANT]] = scores[:, [MALIGNANT, BENIGN]]
    assert lesion_curve.aucs(swapped, labels)["malignant_vs_benign"] == 0.0


@pytest.mark.parametrize("module", [lesion_curve, lesion_select])
def test_help(module, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0 and "validation" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--data", "x", "--model", "m", "--scan", "nonsense=1"], "KEY=VALUE"),
        (["--data", "x", "--model", "m", "--scan", "refine_top=many"], "not a number"),
    ],
)
def test_select_refuses_a_bad_scan_setting_before_scanning(argv, says) -> None:
    with pytest.raises(SystemExit, match=says):
        lesion_select.main(argv)


def test_hard_negatives_without_a_finder_are_refused_before_any_data() -> None:
    from benchmarks import train_lesion_model

    with pytest.raises(SystemExit, match="needs --init"):
        train_lesion_model.main(["--hard-negatives", "2", "--data", "/nonexistent/never-made"])


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--recalibrate"], "--recalibrate needs --init"),
        (["--set", "k_coarse=2"], "--set is for --recalibrate"),
        (["--recalibrate", "--init", "m", "--set", "k_coarse=two"], "not a number"),
        (["--recalibrate", "--init", "m", "--set", "colour=2"], "KEY=VALUE"),
        (["--crop", "100"], "multiple of 16"),
        (["--spacing", "0"], "multiple of 16, --spacing positive"),
        (["--evaluate-only", "--crop", "128"], "a saved model keeps its own window"),
        (["--background-crops", "0"], "background-crops must be >= 1"),
        (["--evaluate-only", "--no-evaluate"], "exclude each other"),
        (["--ce-t-max", "0.7"], "ce-t-max must lie in"),  # above --train-t-max 0.5
        (["--ce-t-max", "0.01"], "ce-t-max must lie in"),
        (["--max-minutes", "0"], "max-minutes must be > 0"),
        (["--extra-data", "/nonexistent/extra"], "no synth.json"),
        (["--evaluate-only", "--extra-data", "x"], "--extra-data is for training"),
    ],
)
def test_training_options_are_checked_before_any_data(argv, says) -> None:
    from benchmarks import train_lesion_model

    with pytest.raises(SystemExit, match=says):
        train_lesion_model.main([*argv, "--data", "/nonexistent/never-made"])


def test_card_settings_change_only_numbers_of_the_card() -> None:
    from sgc_core.lesion_card import LesionCard

    card = LesionCard().with_settings(["middle_windows=16", "k_middle=2", "min_breast_fraction=.5"])
    assert (card.middle_windows, card.k_middle, card.min_breast_fraction) == (16, 2, 0.5)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        LesionCard().with_settings(["classes=1"])  # a tuple, not a number
    with pytest.raises(ValueError, match="middle_windows"):
        LesionCard().with_settings(["middle_windows=-1"])


def test_a_wider_window_cuts_its_own_crops_beside_the_default_cache(tmp_path) -> None:
    from benchmarks.train_lesion_model import make_crops
    from sgc_core.synth import write_dataset

    folder = tmp_path / "family"
    write_dataset(folder, 2, seed=5, size="small", style="mixed", normal_fraction=0.0)
    wide = make_crops(folder, 1, crop=128, spacing=0.4)
    assert wide.images.shape[1:] == (128, 128)
    assert (wide.recipe.crop, wide.recipe.stride) == (128, 64)
    assert (folder / "crops-128px-0.4mm.npz").is_file() and not (folder / "crops.npz").exists()
    assert make_crops(folder, 1).images.shape[1:] == (64, 64)


def test_more_normal_crops_per_view_keep_the_lesion_crops_and_their_own_cache(tmp_path) -> None:
    from benchmarks.train_lesion_model import make_crops
    from sgc_core.datasets.crops import CROP_CLASSES
    from sgc_core.synth import write_dataset

    folder = tmp_path / "family"
    write_dataset(folder, 2, seed=5, size="small", style="mixed", normal_fraction=0.0)
    base = make_crops(folder, 1)
    more = make_crops(folder, 1, background=6)
    assert (folder / "crops.npz").is_file() and (folder / "crops-64px-0.4mm-bg6.npz").is_file()
    normal = CROP_CLASSES.index("normal")
    n_base, n_more = (int((c.labels == normal).sum()) for c in (base, more))
    assert n_more == 3 * n_base and more.recipe.background_crops == 6
    lesion = base.labels != normal
    assert np.array_equal(base.images[lesion], more.images[more.labels != normal])


def test_a_second_draw_adds_only_its_training_crops_and_only_in_the_same_window(tmp_path) -> None:
    from benchmarks.train_lesion_model import make_crops
    from sgc_core.datasets.crops import CropDataError
    from sgc_core.synth import write_dataset

    write_dataset(tmp_path / "a", 3, seed=5, size="small", style="mixed", normal_fraction=0.0)
    write_dataset(tmp_path / "b", 10, seed=6, size="small", style="strands", normal_fraction=0.0)
    base, extra = make_crops(tmp_path / "a", 1), make_crops(tmp_path / "b", 1)
    both = base.joined(extra, split="train")
    train = extra.splits == "train"
    assert 0 < train.sum() < len(extra.labels), "the draw must have other splits to leave out"
    assert len(both.labels) == len(base.labels) + train.sum()
    assert np.array_equal(both.images[len(base.labels) :], extra.images[train])
    assert set(both.styles[len(base.labels) :]) == {"strands"}
    assert set(both.splits[len(base.labels) :]) == {"train"}
    assert np.array_equal(both.labels, np.concatenate([base.labels, extra.labels[train]]))
    with pytest.raises(CropDataError, match="cannot join"):
        base.joined(make_crops(tmp_path / "b", 1, crop=128))
    with pytest.raises(CropDataError, match="at 0.5 mm cannot join"):
        base.joined(make_crops(tmp_path / "b", 1, spacing=0.5))
    from benchmarks.train_lesion_model import _extra_draw

    assert "--studies 10 --seed 6 --style strands" in _extra_draw(tmp_path / "b")


def test_calibration_views_skip_the_choice_views_and_keep_other_splits() -> None:
    """--val-skip N leaves the first N validation views (lesion_select's) out of the fit."""
    from types import SimpleNamespace

    from benchmarks.train_lesion_model import _cap_val

    notes = [SimpleNamespace(split=s, i=i) for i, s in enumerate(["val"] * 6 + ["test", "train"])]
    kept = _cap_val(notes, 0, skip=4)
    assert [n.i for n in kept if n.split == "val"] == [4, 5]
    assert {n.split for n in kept} == {"val", "test", "train"}
    assert [n.i for n in _cap_val(notes, 3) if n.split == "val"] == [0, 1, 2]
    assert [n.i for n in _cap_val(notes, 1, skip=2) if n.split == "val"] == [2]


def _select_argv(tmp_path, seed: int) -> list[str]:
    """lesion_select's options for the bundled finder on 4 validation views of a tiny family."""
    from pathlib import Path

    from sgc_core.synth import write_dataset

    family = tmp_path / "family"
    write_dataset(
        family, 4, seed=seed, size="medium", difficulty=0.0, style="mixed",
        malignant_fraction=0.5, splits=(0.5, 0.25, 0.25),
    )  # fmt: skip
    model = Path(__file__).resolve().parents[1] / "sgc_core" / "models" / "sgc-lesion-mammo"
    return ["--data", str(family), "--views", "4", "--threads", "1", "--model", str(model)]


def test_select_prints_every_column_for_each_model(tmp_path, capsys) -> None:
    """A run on a small family's validation views: each model's row names every key of KEYS
    (the OOD fraction included) with a number, and the JSON holds the same figures."""
    import json

    out = tmp_path / "sel.json"
    argv = _select_argv(tmp_path, seed=5)
    assert lesion_select.main([*argv, "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    line = capsys.readouterr().out.splitlines()[-1]
    for key in lesion_select.KEYS:
        assert key in row and f"{key} " in line, key
    assert 0.0 <= row["ood_flagged_fraction"] <= 1.0
    assert f"ood_flagged_fraction {row['ood_flagged_fraction']:.3f}" in line
    assert len(row["views"]) == 4 and {"patient", "p_malignant", "top_hit"} <= set(row["views"][0])


def test_a_second_run_is_read_as_a_paired_difference_from_the_first(tmp_path, capsys) -> None:
    """The same weights scanned twice with the same settings differ by exactly nothing, and
    the paired line names every figure with its interval."""
    argv = _select_argv(tmp_path, seed=6)
    assert lesion_select.main([*argv, "--scan", "seed=0"]) == 0
    paired = [x for x in capsys.readouterr().out.splitlines() if " minus " in x]
    assert len(paired) == 1 and "[seed=0] minus" in paired[0]
    for key in ("auc_malignant_vs_rest", "auc_malignant_vs_benign_lesion"):
        assert f"{key} +" in paired[0]  # NaN where the views hold one class (this family)
    for key in ("top_finding_hit", "ece"):
        assert f"{key} +0.000 (+0.000 to +0.000)" in paired[0]


def test_select_reads_the_splits_it_is_given_and_refuses_others(tmp_path, capsys) -> None:
    """``--split train`` reads the draw's training views (each row says its split); a split
    that is not val or train is refused before any scan."""
    import json

    out = tmp_path / "sel.json"
    argv = _select_argv(tmp_path, seed=7)
    argv[argv.index("--views") + 1] = "2"
    assert lesion_select.main([*argv, "--split", "train", "--json", str(out)]) == 0
    assert "# 2 train views" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())
    assert [v["part"] for v in row["views"]] == ["train", "train"]
    with pytest.raises(SystemExit):
        lesion_select.main([*argv, "--split", "test"])
