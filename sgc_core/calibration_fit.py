"""Fit a model card's calibration on a validation split (used at the end of training).

Kept apart from ``calibration`` (pure functions) because it runs the estimator over a data set.
Fills ``calibration.temperature``, ``operating_point`` (threshold on P(positive) giving the
target sensitivity on validation), ``ood`` (bits/dim thresholds above and below, together
flagging the stated false-positive rate of in-distribution validation images) and ``metrics`` (validation metrics at those).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from sgc_core.calibration import fit_temperature, ood_threshold, threshold_for_sensitivity
from sgc_core.datasets.base import Dataset
from sgc_core.evaluation import compute_metrics, score_dataset
from sgc_core.inference import Classifier
from sgc_core.model_card import ModelCard


def calibrate_card(
    model: nn.Module,
    card: dict,
    val_set: Dataset,
    device: str,
    target_sensitivity: float = 0.9,
    ood_fpr: float = 0.05,
) -> dict:
    """Return ``card`` with calibration, operating point, OOD threshold and metrics filled in."""
    card = dict(card)
    clf = Classifier(model, card, device)
    card["estimator"] = clf.estimator.to_dict()
    res = score_dataset(clf, val_set)
    labels = res["labels"]
    priors = card["calibration"]["priors"]
    temperature = fit_temperature(res["scores"], labels, priors)
    card["calibration"] = {
        "temperature": temperature,
        "method": clf.estimator.label(),
        "priors": priors,
        "fitted_on": f"validation split, {len(labels)} images",
    }
    clf.card = ModelCard.from_dict(card)
    probs_t = clf.posterior(res["scores"])
    probs = probs_t.numpy()
    pos = card["classes"].index(card["positive_class"])
    is_pos = labels.numpy() == pos
    try:
        thr = threshold_for_sensitivity(probs[:, pos], is_pos, target_sensitivity)
        card["operating_point"] = {"threshold": thr, "target_sensitivity": target_sensitivity}
    except ValueError as exc:
        card["operating_point"] = {"threshold": 0.5, "target_sensitivity": None, "note": str(exc)}
    ood = clf.ood_scores(res["loglik"]).numpy()
    # Two-sided (typicality): 4/5 of the false-positive budget above, 1/5 below, because
    # blank and over-smooth images score *lower* bits/dim than real mammograms.
    fpr_low = ood_fpr / 5
    card["ood"] = {
        "score": "bits_per_dim",
        "threshold": ood_threshold(ood, ood_fpr - fpr_low),
        "threshold_low": -ood_threshold(-ood, fpr_low),
        "fpr": ood_fpr,
    }
    clf.card = ModelCard.from_dict(card)
    predicted = np.array([card["classes"].index(c) for c in clf.decide(probs_t)])
    card["metrics"] = {
        "validation": compute_metrics(
            probs, labels.numpy(), predicted, card["classes"], card["positive_class"]
        )
    }
    return card
