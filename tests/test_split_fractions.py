"""Both seeded splits (synthetic studies, patients of a set without an official split) refuse
bad train/val/test fractions with the one shared message, and take good ones."""

from __future__ import annotations

import pytest

from sgc_core.datasets.mammo import random_patient_split
from sgc_core.synth import assign_splits

BAD = [(0.5, 0.5), (0.8, 0.3, -0.1), (0.7, 0.2, 0.2), (0.5, 0.25, 0.25, 0.0)]


@pytest.mark.parametrize("fractions", BAD)
def test_bad_fractions_are_refused_by_both_splits(fractions):
    message = "split fractions must be three non-negative numbers summing to 1"
    with pytest.raises(ValueError, match=message):
        assign_splits(10, 0, fractions)
    with pytest.raises(ValueError, match=message):
        random_patient_split([f"p{i}" for i in range(10)], fractions, 0)


def test_good_fractions_split_every_item():
    studies = assign_splits(20, 3, (0.7, 0.15, 0.15))
    assert [studies.count(s) for s in ("train", "val", "test")] == [14, 3, 3]
    patients = random_patient_split([f"p{i}" for i in range(20)], (0.5, 0.25, 0.25), 1)
    assert sorted(patients) == sorted(f"p{i}" for i in range(20))
    assert sorted(set(patients.values())) == ["test", "train", "val"]
