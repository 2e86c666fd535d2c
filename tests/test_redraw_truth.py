"""Writing again the studies an evaluation scored (benchmarks/redraw_truth.py and
synth.dataset.write_studies): the same bytes and truth as the full draw's, from the seed."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks import redraw_truth
from sgc_core.synth import write_dataset

OPTS = dict(size="small", difficulty=0.3, normal_fraction=0.25, style="mixed")


def _labels(path):
    with path.open(newline="") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def test_a_scored_study_is_written_again_byte_for_byte_with_its_truth(tmp_path):
    full = tmp_path / "full"
    write_dataset(full, 3, seed=21, **OPTS)
    views = [{"part": "test", "patient": "SYN0021-000002", "path": "R_CC.dcm"},
             {"part": "val", "patient": "SYN0021-000000", "path": "L_CC.dcm"}]  # fmt: skip
    (tmp_path / "views.json").write_text(json.dumps(views))
    again = tmp_path / "again"
    argv = ["--views", str(tmp_path / "views.json"), "--seed", "21", "--out", str(again)]
    assert redraw_truth.main([*argv, "--size", "small", "--workers", "1"]) == 0
    redrawn, original = _labels(again / "labels.csv"), _labels(full / "labels.csv")
    assert sorted(redrawn) == [f"images/SYN0021-000002/{v}.dcm" for v in
                               ("L_CC", "L_MLO", "R_CC", "R_MLO")]  # fmt: skip
    for path, row in redrawn.items():
        assert (again / path).read_bytes() == (full / path).read_bytes()
        assert {k: v for k, v in original[path].items() if k != "split"} == row


def test_rows_of_another_seed_are_refused_in_one_line(tmp_path):
    views = [{"part": "test", "patient": "SYN0808-000007", "path": "R_CC.dcm"}]
    (tmp_path / "views.json").write_text(json.dumps(views))
    with pytest.raises(SystemExit, match="no studies of seed 809"):
        redraw_truth.main(["--views", str(tmp_path / "views.json"), "--seed", "809",
                           "--out", str(tmp_path / "out")])  # fmt: skip
    assert not (tmp_path / "out").exists()
