"""benchmarks/lesion_cnn_scan.py: a window classifier scanned over the finder's windows.

What must hold for its figures to mean anything: the lesion's window is ranked where its
score puts it, candidates are half a window apart, a window classifier that knows where the
lesion is gets rank 1 and a top finding that hits the lesion after the mapping back to
source pixels, and a whole run writes a row per view for both the CNN and the SGC.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from benchmarks import lesion_cnn_scan as cs
from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_scan import window_grid
from sgc_core.scan_geometry import scan_dataset

ROOT = Path(__file__).resolve().parents[1]


def logp_of(lesion_logodds: np.ndarray) -> np.ndarray:
    """(N, 3) log posteriors whose lesion log-odds are the given ones, benign = malignant."""
    p_lesion = 1.0 / (1.0 + np.exp(-lesion_logodds))
    return np.log(np.stack([1 - p_lesion, p_lesion / 2, p_lesion / 2], axis=1))


def test_the_lesion_window_is_ranked_by_its_score() -> None:
    centres = np.array([[16, 16], [16, 48], [48, 16], [48, 48]], dtype=float)
    logp = logp_of(np.array([3.0, 1.0, 2.0, 0.0]))
    assert cs.lesion_rank(centres, logp, (50, 45), stride=32) == 4
    assert cs.lesion_rank(centres, logp, (47, 20), stride=32) == 2
    assert cs.lesion_rank(centres, logp, (200, 200), stride=32) is None


def test_candidates_are_half_a_window_apart() -> None:
    centres = np.array([[0, 0], [0, 10], [0, 40], [0, 80]], dtype=float)
    picked = cs.picked_windows(centres, np.array([4.0, 3.0, 2.0, 1.0]), n=3, apart=32)
    assert picked == [0, 2, 3]


def test_a_small_breast_still_gets_a_window() -> None:
    mask = np.zeros((200, 200), dtype=bool)
    mask[90:100, 0:12] = True
    grid = window_grid(mask, crop=64, stride=32, min_fraction=0.25)
    assert len(grid) == 1 and mask[int(grid[0, 0]), int(grid[0, 1])]
    assert len(window_grid(np.zeros((50, 50), dtype=bool), 64, 32, 0.25)) == 0


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Path:
    from benchmarks.train_lesion_model import make_crops
    from sgc_core.synth import write_dataset

    folder = tmp_path_factory.mktemp("cnn-scan") / "family"
    write_dataset(
        folder, 4, seed=3, size="medium", difficulty=0.0, style="mixed",
        malignant_fraction=1.0, splits=(0.5, 0.25, 0.25),
    )  # fmt: skip
    make_crops(folder, 1)
    return folder


class Oracle:
    """A window classifier that knows the lesion: P(lesion) falls with distance to it."""

    def __init__(self, lesion_rc: tuple[float, float]):
        self.at = np.asarray(lesion_rc)

    def logp(self, image, centres: np.ndarray) -> np.ndarray:
        return logp_of(5.0 - np.hypot(*(centres - self.at).T) / 8.0)

    def refine(self, image, centre: np.ndarray):
        return self.at.copy(), self.logp(image, self.at[None])[0]


def test_a_window_classifier_that_knows_the_lesion_hits_it_in_source_pixels(family) -> None:
    from sgc_core.datasets.crops import read_synthetic_annotations

    card = LesionCard()
    notes = [n for n in read_synthetic_annotations(family) if n.finding == "malignant"]
    assert notes
    for note in notes[:4]:
        scan = scan_dataset(pydicom.dcmread(note.path), card.spacing_mm)
        r, c = scan.geometry.to_scan(np.array([note.row]), np.array([note.col]))
        for refine in (True, False):
            row = cs.scan_view("oracle", Oracle((r[0], c[0])), note, card, refine)
            assert row.lesion_rank == 1, note.path
            assert row.top_hit is True or not refine, note.path
        wrong = cs.scan_view("wrong", Oracle((r[0] + 300, c[0] + 300)), note, card, True)
        assert wrong.top_hit is False and wrong.lesion_rank > 1


def test_a_run_writes_a_row_per_view_for_the_cnn_and_the_sgc(family, tmp_path, capsys) -> None:
    out = tmp_path / "rows.json"
    sgc = ROOT / "sgc_core" / "models" / "sgc-lesion-mammo"
    argv = ["--data", str(family), "--sgc", str(sgc), "--sgc-set", "k_coarse=2"]
    argv += [
        "--views",
        "2",
        "--test-views",
        "2",
        "--held-out",
        str(family),
        "--held-out-views",
        "1",
    ]
    assert cs.main([*argv, "--steps", "3", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    printed = capsys.readouterr().out
    sgc_name = "sgc " + json.loads(sgc.with_suffix(".json").read_text())["version"]
    models = ("cnn", sgc_name, f"{sgc_name} [k_coarse=2]")
    assert {(r["model"], r["split"]) for r in rows} == {
        (m, s) for m in models for s in ("val", "test", "held-out")
    }
    assert len(rows) == 15 and "top_finding_hits" in printed
    for r in rows:
        assert r["windows"] >= 1 and np.isfinite(r["top_logit"])
        assert (r["top_hit"] is None) == (r["finding"] != "malignant")


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cs.main(["--help"])
    assert stop.value.code == 0 and "window" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--sgc-set", "k_coarse=4"], "needs --sgc"),
        (["--sgc", "m", "--sgc-set", "k_coarse=four"], "not a number"),
        (["--sgc", "m", "--sgc-set", "colour=2"], "KEY=VALUE"),
    ],
)
def test_bad_sgc_settings_are_refused_before_training(argv, says) -> None:
    with pytest.raises(SystemExit, match=says):
        cs.main(["--data", "/nonexistent/never-made", *argv])


def test_a_part_without_views_prints_no_row(family, capsys) -> None:
    argv = ["--data", str(family), "--views", "1", "--test-views", "0", "--steps", "2"]
    assert cs.main([*argv, "--threads", "1"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert [line.split(":")[0] for line in printed] == ["val cnn"]


def test_each_sgc_row_is_set_against_the_cnn_of_the_same_run() -> None:
    by_model = {
        "cnn": {"auc_rest_top_logit": 0.8, "lesion_window_first": 0.4},
        "sgc 1": {"auc_rest_top_logit": 0.6, "lesion_window_first": 0.1},
        "sgc 2": {"auc_rest_top_logit": None},
    }
    (line,) = cs.against_cnn("val", by_model)
    assert (
        line
        == "val sgc 1 vs cnn: view AUC 0.600 / 0.800 = 0.75x (-0.200); lesion window first 10% vs 40%"
    )
