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
