"""The typed model card: its validation, its one decision rule, and the SR agreeing with it.

Why: the decision threshold used to be read two ways (argmax without an operating point in
the classifier, "the last class at 0.5" in the report), so an SR could say malignant where the
stored prediction said benign. These tests fail if the two ever part again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from sgc_core.model_card import DEFAULT_THRESHOLD, ModelCard, ModelCardError

BASE = {
    "name": "m",
    "version": "1",
    "sha256": "0" * 64,
    "classes": ["normal", "benign", "malignant"],
    "positive_class": "malignant",
    "channels": 1,
    "image_size": 16,
    "sde": {},
    "architecture": {},
}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"positive_class": "cancer"}, "positive_class"),
        ({"classes": ["one"]}, "classes"),
        ({"classes": ["a", "a"]}, "classes"),
        ({"operating_point": 0.3}, "operating_point"),
        ({"operating_point": {"threshold": 1.5}}, "threshold"),
        ({"calibration": {"priors": [0.5, 0.5]}}, "priors"),
        ({"calibration": {"temperature": 0}}, "temperature"),
        ({"input_range": [1, 0]}, "input_range"),
        ({"image_size": None}, "m"),
    ],
)
def test_a_wrong_card_is_refused_with_the_key_named(change, words):
    with pytest.raises(ModelCardError, match=words):
        ModelCard.from_dict({**BASE, **change})


def test_a_network_trained_on_a_low_noise_band_is_refused_where_it_would_score_above_it():
    """A network never trained above t_max must not be scored there: the whole-view ELBO
    integrates t up to 1, and a lesion card's scan band must lie inside the trained band."""
    trained = {"training": {"config": {"t_max": 0.5}}}
    with pytest.raises(ModelCardError, match="whole-view ELBO"):
        ModelCard.from_dict({**BASE, **trained})
    with pytest.raises(ModelCardError, match="reaches above"):
        ModelCard.from_dict({**BASE, **trained, "lesion": {"t_range": [0.1, 0.7]}})
    card = ModelCard.from_dict({**BASE, **trained, "lesion": {"t_range": [0.01, 0.35]}})
    assert card.is_lesion_finder and card.lesion.t_range == (0.01, 0.35)


def test_a_card_without_operating_point_or_positive_class_uses_the_documented_defaults():
    card = ModelCard.from_dict({k: v for k, v in BASE.items() if k != "positive_class"})
    assert card.positive_class == "malignant" and card.threshold == DEFAULT_THRESHOLD
    # Below the threshold the likeliest other class wins, even when the positive class is the
    # likeliest of all (argmax would say malignant; the operating point says not).
    assert card.decide([0.3, 0.25, 0.45]) == "normal"
    assert card.decide([0.1, 0.3, 0.6]) == "malignant"


@pytest.mark.parametrize("operating_point", [None, {"threshold": 0.05}, {"threshold": 0.9}])
def test_decide_says_positive_exactly_when_the_operating_point_does(operating_point):
    card = ModelCard.from_dict({**BASE, "operating_point": operating_point})
    rng = np.random.default_rng(0)
    for probs in rng.dirichlet(np.ones(3) * 0.7, size=500):
        positive = card.decide(probs) == card.positive_class
        assert positive == card.is_positive(probs[card.positive_index])


def _mg_files(folder: Path, n: int) -> list[Path]:
    from tests.helpers.mg import MGSpec, write_mg

    study = generate_uid()
    return [
        write_mg(folder / f"{i}.dcm", MGSpec(study_uid=study, seed=i, laterality="LR"[i % 2]))
        for i in range(n)
    ]


def _finding_codes(ds: pydicom.Dataset) -> list[str]:
    """The value of every "Finding" (121071, DCM) code item in the SR's content tree."""
    found = []
    for item in ds.get("ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeValue == "121071" and item.get("ConceptCodeSequence"):
            found.append(item.ConceptCodeSequence[0].CodeMeaning)
        found.extend(_finding_codes(item))
    return found


@pytest.mark.parametrize("threshold", [0.0, 1.0, None])
def test_the_sr_finding_equals_the_stored_prediction(tmp_path, tiny_model, threshold):
    """Whatever the operating point, each view's SR finding is the classifier's prediction."""
    from sgc_core.checkpoint import model_paths
    from sgc_core.view_model import load_view_model
    from worker.pipeline import build_report, classify_paths

    weights, card_path = model_paths(tiny_model)
    card = json.loads(card_path.read_text())
    card.pop("operating_point", None)
    if threshold is not None:
        card["operating_point"] = {"threshold": threshold}
    copy = tmp_path / "m"
    (tmp_path / "m.safetensors").write_bytes(weights.read_bytes())
    (tmp_path / "m.json").write_text(json.dumps(card))
    model = load_view_model(copy)

    outcomes = classify_paths(model, _mg_files(tmp_path / "study", 4))
    sr = build_report(model, outcomes, revision=1)
    assert sr is not None
    predicted = [
        "Malignant" if o.result.predicted_class == "malignant" else "Benign" for o in outcomes
    ]
    if threshold is not None:  # every view lands on one side: the rule is really applied
        assert set(predicted) == {"Malignant" if threshold == 0.0 else "Benign"}
    assert sorted(_finding_codes(sr)[: len(outcomes)]) == sorted(predicted)
