"""The two-sided (typicality) OOD rule the bundled model's card uses."""

from __future__ import annotations

import math

import torch

from sgc_core.inference import Classifier


def _classifier(ood: dict) -> Classifier:
    card = {
        "name": "t",
        "classes": ["benign", "malignant"],
        "channels": 1,
        "image_size": 8,
        "sde": {"kind": "vp", "beta_min": 0.1, "beta_max": 20.0},
        "ood": ood,
    }
    return Classifier(torch.nn.Identity(), card)


def test_flags_above_below_and_nan():
    clf = _classifier({"threshold": 6.0, "threshold_low": 5.0})
    flags = clf.ood_flags(torch.tensor([4.9, 5.0, 5.5, 6.0, 6.1, math.nan]))
    assert flags.tolist() == [True, False, False, False, True, True]


def test_one_sided_card_still_works():
    clf = _classifier({"threshold": 6.0})
    assert clf.ood_flags(torch.tensor([0.0, 7.0])).tolist() == [False, True]


def test_no_threshold_flags_nothing():
    clf = _classifier({})
    assert clf.ood_flags(torch.tensor([0.0, 100.0])).tolist() == [False, False]


def test_reason_names_the_rule_that_fired():
    clf = _classifier({"threshold": 6.0, "threshold_low": 5.0})
    assert "above" in clf.ood_reason(6.5)
    assert "below" in clf.ood_reason(4.5)
    assert "above" in clf.ood_reason(math.nan)
    assert clf.ood_reason(5.5) is None
