"""The bundled demo model (sgc_core/models/): it loads, its card matches its weights and its
reports, and it classifies DICOM through the card's own preprocessing, flagging inputs that are
not mammograms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sgc_core.checkpoint import read_card, sha256_of

MODELS = Path(__file__).resolve().parents[1] / "sgc_core" / "models"
NAME = "sgc-demo-mammo"
WEIGHTS = MODELS / f"{NAME}.safetensors"


@pytest.fixture(scope="module")
def classifier():
    from sgc_core.inference import load_classifier

    torch.set_num_threads(2)
    return load_classifier(WEIGHTS)


def test_bundled_files_exist_and_are_small():
    assert WEIGHTS.is_file(), "the bundled model is missing"
    assert WEIGHTS.stat().st_size <= 25 * 2**20
    for name in ("report.json", "metrics.json", "roc.png", "reliability.png"):
        assert (MODELS / "eval" / name).is_file(), name


def test_card_sha256_matches_weights_and_report():
    card = read_card(WEIGHTS)
    assert card["sha256"] == sha256_of(WEIGHTS)
    report = json.loads((MODELS / "eval" / "report.json").read_text())
    assert report["model"]["sha256"] == card["sha256"]


def test_card_records_preprocessing_estimator_and_calibration():
    from sgc_core.preprocess import PreprocessConfig

    card = read_card(WEIGHTS)
    config = PreprocessConfig.from_dict(card["preprocess"])
    assert config.image_size == (card["image_size"], card["image_size"])
    assert config.scaling == "[0,1]"
    assert card["calibration"]["method"] == "elbo-uniform-stratified-k" + str(
        card["estimator"]["k"]
    )
    assert card["calibration"]["temperature"] > 0
    assert 0.0 < card["operating_point"]["threshold"] < 1.0
    assert 0 < card["ood"]["threshold_low"] < card["ood"]["threshold"]


def test_runtime_default_is_the_lesion_finder_and_this_model_stays_available(tmp_path):
    """With SGC_MODEL unset the worker takes the bundled lesion finder; this whole-view model
    is still shipped and is what SGC_MODEL=.../sgc-demo-mammo loads."""
    from sgc_config.settings import Settings
    from worker.runtime import DEFAULT_BUNDLED, resolve_model_path

    default = resolve_model_path(Settings(data_dir=tmp_path))
    assert default == MODELS / f"{DEFAULT_BUNDLED}.safetensors" and default.is_file()
    assert WEIGHTS in sorted(MODELS.glob("*.safetensors"))
    assert resolve_model_path(Settings(data_dir=tmp_path, model=WEIGHTS)) == WEIGHTS


def test_classifies_a_synthetic_study_end_to_end(classifier):
    """Four views of a fresh synthetic study (a seed outside the training set), DICOM ->
    preprocessing from the card -> ELBO classification: valid posteriors, in-distribution."""
    from sgc_core.preprocess import PreprocessConfig, preprocess_dataset
    from sgc_core.synth import SynthConfig, generate_study

    config = PreprocessConfig.from_dict(classifier.card.data["preprocess"])
    # The demo set's mix (docs/model.md), a seed outside its 1000 training studies.
    mix = SynthConfig(
        difficulty=0.0, mass_fraction=1.0, normal_fraction=0.7, malignant_fraction=0.7
    )
    views = generate_study(987654, mix)
    x = torch.stack([preprocess_dataset(ds, config).tensor for ds in views])
    results = classifier.classify(x)
    assert len(results) == 4
    for r in results:
        assert r.predicted_class in ("benign", "malignant")
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert r.method.startswith("elbo")
    assert sum(r.ood for r in results) <= 1


def test_same_image_same_answer_in_any_batch(classifier):
    from sgc_core.preprocess import PreprocessConfig, preprocess_dataset
    from sgc_core.synth import SynthConfig, generate_study

    config = PreprocessConfig.from_dict(classifier.card.data["preprocess"])
    views = generate_study(4242, SynthConfig(difficulty=0.0))
    x = torch.stack([preprocess_dataset(ds, config).tensor for ds in views])
    alone = classifier.classify(x[:1])[0]
    batched = classifier.classify(x)[0]
    assert alone.probabilities["malignant"] == pytest.approx(
        batched.probabilities["malignant"], abs=1e-5
    )


@pytest.mark.parametrize("kind", ["ct", "mr", "noise", "blank"])
def test_flags_non_mammography_inputs(classifier, kind):
    from benchmarks.ood_inputs import non_mammography_inputs, ood_rate

    inputs = non_mammography_inputs(classifier.card, n_noise=8, kinds=(kind,))[kind]
    assert inputs, f"no {kind} inputs"
    r = ood_rate(classifier, inputs)
    assert r["flagged"] == r["n"], r
