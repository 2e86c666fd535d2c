"""The one check of train/val/test fractions, shared by every seeded split: the synthetic
studies' (synth/dataset.py) and the patients' of sets without an official split
(datasets/mammo.py). Its own module so the generator need not import the data set loaders.
"""

from __future__ import annotations

import math


def check_split_fractions(fractions: tuple[float, float, float]) -> None:
    """Refuse anything but three non-negative fractions summing to 1 (train, val, test)."""
    if (
        len(fractions) != 3
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0)
    ):
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1: {fractions}"
        )
