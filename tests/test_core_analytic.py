"""The estimators against closed forms: Gaussian class-conditional data under the VP-SDE.

For x | y ~ N(mu_y, s^2 I) the score of every marginal is known exactly
(``AnalyticGaussianScore``), so the probability-flow ODE must reproduce the Gaussian
log-density, the likelihood-weighted ELBO must be a lower bound that is tight for the true score,
and the classifier's posterior must be the Bayes posterior of the two Gaussians.
"""

from __future__ import annotations

import math

import pytest
import torch

from sgc_core.analytic import AnalyticGaussianScore
from sgc_core.calibration import log_posterior
from sgc_core.elbo import elbo_scores
from sgc_core.likelihood_ode import ode_log_likelihood
from sgc_core.sde import VPSDE

SHAPE = (1, 4, 4)
STD = 0.5


@pytest.fixture(scope="module")
def setup():
    sde = VPSDE(0.1, 20.0)
    g = torch.Generator().manual_seed(0)
    means = torch.stack(
        [torch.randn(SHAPE, generator=g) * 0.4, torch.randn(SHAPE, generator=g) * 0.4]
    ).double()
    model = AnalyticGaussianScore(sde, means, STD)
    x = torch.cat([model.sample(4, 0, g), model.sample(4, 1, g)]).double()
    exact = torch.stack([model.log_prob(x, 0), model.log_prob(x, 1)], dim=1)
    return sde, model, x, exact


def prior_mismatch(sde, model, x: torch.Tensor, y: int, eps: float = 1e-5) -> torch.Tensor:
    """log pi(x_1) - log p_1(x_1) along the exact (affine) flow of Gaussian data.

    The VP prior N(0, I) is not exactly p_1 (m(1) = 0.0066, not 0); the ODE likelihood uses pi,
    so its exact value is log p_0(x) plus this term (a few hundredths of a nat here)."""
    one = torch.tensor(1.0, dtype=torch.float64)
    t0 = torch.tensor(eps, dtype=torch.float64)
    var = lambda t: sde.mean_coeff(t) ** 2 * STD**2 + sde.marginal_std(t) ** 2  # noqa: E731
    mu = model.means[y]
    x1 = sde.mean_coeff(one) * mu + torch.sqrt(var(one) / var(t0)) * (x - sde.mean_coeff(t0) * mu)
    d = x[0].numel()
    x1 = x1.reshape(x.shape[0], -1)
    m1 = (sde.mean_coeff(one) * mu).reshape(-1)
    log_pi = -0.5 * d * math.log(2 * math.pi) - 0.5 * x1.pow(2).sum(1)
    log_p1 = -0.5 * d * torch.log(2 * math.pi * var(one)) - 0.5 * (x1 - m1).pow(2).sum(1) / var(one)
    return log_pi - log_p1


def test_ode_log_likelihood_matches_the_gaussian_density(setup) -> None:
    sde, model, x, exact = setup
    r = ode_log_likelihood(
        model,
        sde,
        x,
        2,
        rtol=1e-5,
        atol=1e-5,
        probe="rademacher",
        generator=torch.Generator().manual_seed(1),
    )
    target = exact + torch.stack([prior_mismatch(sde, model, x, y) for y in range(2)], dim=1)
    # Rademacher probes give the exact trace of the (diagonal) analytic Jacobian.
    assert torch.allclose(r.logp, target, atol=2e-3), r.logp - target
    assert (r.logp - exact).abs().max() < 0.1
    assert r.nfe > 10


def test_fixed_step_rk4_agrees_with_dopri5(setup) -> None:
    sde, model, x, exact = setup
    r = ode_log_likelihood(model, sde, x[:2], 2, method="rk4", n_steps=400)
    target = exact[:2] + torch.stack(
        [prior_mismatch(sde, model, x[:2], y) for y in range(2)], dim=1
    )
    assert torch.allclose(r.logp, target, atol=5e-3)
    assert r.nfe == 1600


def test_gaussian_probes_are_unbiased(setup) -> None:
    sde, model, x, exact = setup
    r = ode_log_likelihood(
        model,
        sde,
        x[:1],
        2,
        probe="gaussian",
        n_probes=64,
        rtol=1e-4,
        atol=1e-4,
        generator=torch.Generator().manual_seed(2),
    )
    assert (r.logp - exact[:1]).abs().max() < 1.0


def test_likelihood_weighted_elbo_is_a_tight_lower_bound_for_the_true_score(setup) -> None:
    sde, model, x, exact = setup
    r = elbo_scores(
        model,
        sde,
        x,
        2,
        k=1024,
        t_sampling="importance",
        generator=torch.Generator().manual_seed(3),
    )
    gap = (r.elbo - exact).mean()
    se = r.stderr.pow(2).sum().sqrt() / r.stderr.numel()
    assert se < 0.3
    assert gap < 3 * se, f"ELBO exceeds log p by {gap:.3f} nats (MC standard error {se:.3f})"
    assert gap.abs() < 4 * se + 0.05, f"ELBO of the true score is {gap:.3f} nats from log p"


def test_elbo_follows_the_score_it_is_given(setup) -> None:
    """The score of N(mu, (1.6 s)^2) data gives that Gaussian's log-density, not the data's."""
    sde, model, x, exact = setup
    other = AnalyticGaussianScore(sde, model.means, STD * 1.6)
    other_exact = torch.stack([other.log_prob(x, 0), other.log_prob(x, 1)], dim=1)
    r = elbo_scores(
        other,
        sde,
        x,
        2,
        k=1024,
        t_sampling="importance",
        generator=torch.Generator().manual_seed(4),
    )
    se = r.stderr.pow(2).sum().sqrt() / r.stderr.numel()
    assert abs(float((r.elbo - other_exact).mean())) < 4 * se + 0.05
    assert (r.elbo - exact).abs().mean() > 1.0


def test_uniform_t_elbo_estimates_the_same_bound(setup) -> None:
    sde, model, x, exact = setup
    r = elbo_scores(
        model,
        sde,
        x[:2],
        2,
        k=4096,
        t_sampling="stratified",
        generator=torch.Generator().manual_seed(5),
    )
    assert (r.elbo - exact[:2]).abs().mean() < 6 * r.stderr.mean() + 0.1


def test_ode_posterior_is_the_bayes_posterior(setup) -> None:
    sde, model, x, exact = setup
    priors = [0.3, 0.7]
    bayes = log_posterior(exact, 1.0, priors).exp()
    r = ode_log_likelihood(model, sde, x, 2, generator=torch.Generator().manual_seed(6))
    post = log_posterior(r.logp, 1.0, priors).exp()
    assert torch.allclose(post, bayes, atol=2e-3)


def test_elbo_posterior_with_shared_noise_approaches_bayes(setup) -> None:
    sde, model, x, exact = setup
    priors = [0.5, 0.5]
    bayes = log_posterior(exact, 1.0, priors).exp()
    r = elbo_scores(
        model, sde, x, 2, k=256, t_sampling="importance", generator=torch.Generator().manual_seed(7)
    )
    post = log_posterior(r.elbo, 1.0, priors).exp()
    assert (post - bayes).abs().max() < 0.05
    assert ((post[:, 1] > 0.5) == (bayes[:, 1] > 0.5)).all()
