"""Malformed attribute values from a broken sender end as a PreprocessError, not a crash."""

from __future__ import annotations

import pytest

from sgc_core.preprocess import PreprocessConfig, PreprocessError, preprocess_dataset
from sgc_core.synth import SynthConfig, generate_study


def test_multi_valued_rows_is_a_clear_preprocess_error() -> None:
    # Found by the fuzzer (tests/fuzz/cases/f275c9bd2019de0a): Rows with two values.
    ds = generate_study(2, SynthConfig.for_size("small"))[0]
    ds.Rows = [ds.Rows, ds.Rows]
    with pytest.raises(PreprocessError, match="malformed image attributes: TypeError"):
        preprocess_dataset(ds, PreprocessConfig(image_size=32, scaling="[0,1]"))
