"""Posterior, temperature, operating point, OOD threshold, metrics and bits/dim."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgc_core.calibration import (
    fit_temperature,
    log_posterior,
    ood_threshold,
    threshold_for_sensitivity,
)
from sgc_core.evaluation import compute_metrics, expected_calibration_error
from sgc_core.scaling import bits_per_dim, to_model_space


def test_log_posterior_is_bayes_rule() -> None:
    scores = torch.tensor([[-10.0, -12.0]], dtype=torch.float64)
    post = log_posterior(scores, 1.0, [0.2, 0.8]).exp()
    p1 = 0.2 * math.exp(-10) / (0.2 * math.exp(-10) + 0.8 * math.exp(-12))
    assert float(post[0, 0]) == pytest.approx(p1)
    with pytest.raises(ValueError, match="priors"):
        log_posterior(scores, 1.0, [1.0])


def test_fit_temperature_recovers_the_generating_temperature() -> None:
    """Labels drawn from softmax(s / 40): the fitted T must be close to 40."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4000, 2, generator=g, dtype=torch.float64) * 120
    p = torch.softmax(s / 40.0, dim=1)
    labels = torch.multinomial(p, 1, generator=g)[:, 0]
    t = fit_temperature(s, labels, [0.5, 0.5])
    assert t == pytest.approx(40.0, rel=0.15)


def test_operating_point_reaches_the_target_sensitivity() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200)
    pos = rng.uniform(size=200) < p
    thr = threshold_for_sensitivity(p, pos, 0.9)
    assert (p[pos] >= thr).mean() >= 0.9
    assert (p[pos] >= np.nextafter(thr, 2)).mean() < 0.9  # the largest such threshold
    with pytest.raises(ValueError, match="no positive"):
        threshold_for_sensitivity(p, np.zeros(200, bool), 0.9)


def test_ood_threshold_flags_the_stated_fraction() -> None:
    scores = np.arange(1000, dtype=float)
    thr = ood_threshold(scores, 0.05)
    assert (scores > thr).mean() == pytest.approx(0.05, abs=0.002)
    with pytest.raises(ValueError, match="rate"):
        ood_threshold(scores, 1.5)


def test_metrics_on_a_known_confusion() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 0])
    pred = probs.argmax(1)
    m = compute_metrics(probs, labels, pred, ["benign", "malignant"], "malignant")
    assert m["accuracy"] == 0.5
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.5
    assert m["auc"] == pytest.approx(0.5)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_bits_per_dim_of_the_uniform_density_is_eight() -> None:
    """A density uniform on [-1, 1]^D gives every one of 256 levels probability 1/256: 8 bits."""
    d = 64
    log_density = torch.tensor([-d * math.log(2.0)])
    assert float(bits_per_dim(log_density, d, 256)) == pytest.approx(8.0)


def test_dequantization_stays_in_the_pixel_bin() -> None:
    x = torch.tensor([0.0, 1.0, 128 / 255])
    y = to_model_space(x.repeat(1000), 256, generator=torch.Generator().manual_seed(0)).view(
        1000, 3
    )
    k = torch.tensor([0, 255, 128])
    lo = 2 * k / 256 - 1
    assert (y >= lo).all() and (y <= lo + 2 / 256).all()
    assert torch.allclose(y.mean(0), lo + 1 / 256, atol=2e-4)
