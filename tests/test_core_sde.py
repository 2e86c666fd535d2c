"""The SDEs' closed forms, the prior density and the likelihood-weighting time sampler."""

from __future__ import annotations

import math

import pytest
import torch

from sgc_core.sde import VESDE, VPSDE, LikelihoodTimeSampler, SubVPSDE, perturb, prior_logp


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
def test_marginal_moments_solve_the_moment_odes(sde) -> None:
    """m'(t) = a(t) m(t) and (sigma^2)'(t) = 2 a(t) sigma^2 + g(t)^2 (the Lyapunov equation)."""
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    m = sde.mean_coeff
    dm = (m(t + h) - m(t - h)) / (2 * h)
    assert torch.allclose(dm, sde.drift_coeff(t) * m(t), rtol=1e-6, atol=1e-9)
    var = lambda s: sde.marginal_std(s) ** 2  # noqa: E731
    dvar = (var(t + h) - var(t - h)) / (2 * h)
    expected = 2 * sde.drift_coeff(t) * var(t) + sde.g2(t)
    assert torch.allclose(dvar, expected, rtol=1e-5, atol=1e-8)


def test_vp_closed_form_and_empirical_marginal() -> None:
    sde = VPSDE(0.1, 20.0)
    t = torch.tensor([0.3], dtype=torch.float64)
    b = 0.1 * 0.3 + 0.5 * 19.9 * 0.09
    assert float(sde.mean_coeff(t)) == pytest.approx(math.exp(-0.5 * b), rel=1e-12)
    assert float(sde.marginal_std(t)) == pytest.approx(math.sqrt(1 - math.exp(-b)), rel=1e-12)
    # Euler-Maruyama simulation of dx = -beta/2 x dt + sqrt(beta) dW from x0 = 2 agrees.
    g = torch.Generator().manual_seed(0)
    x = torch.full((40_000,), 2.0, dtype=torch.float64)
    n = 300
    dt = 0.3 / n
    for i in range(n):
        s = torch.tensor(i * dt, dtype=torch.float64)
        x = (
            x
            - 0.5 * sde.beta(s) * x * dt
            + math.sqrt(float(sde.beta(s)) * dt)
            * torch.randn(x.shape, generator=g, dtype=torch.float64)
        )
    assert float(x.mean()) == pytest.approx(2 * float(sde.mean_coeff(t)), abs=0.02)
    assert float(x.std()) == pytest.approx(float(sde.marginal_std(t)), abs=0.02)


def test_marginal_std_is_accurate_at_tiny_t() -> None:
    t = torch.tensor([1e-5], dtype=torch.float32)
    assert float(VPSDE().marginal_std(t)) == pytest.approx(math.sqrt(0.1 * 1e-5), rel=1e-3)


def test_prior_logp_matches_torch_normal() -> None:
    z = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    for sde in (VPSDE(), VESDE(sigma_max=7.0)):
        ref = torch.distributions.Normal(0.0, sde.prior_std).log_prob(z).sum((1, 2, 3))
        assert torch.allclose(prior_logp(sde, z), ref)


def test_perturb_is_m_x_plus_sigma_z() -> None:
    sde = VPSDE()
    x0 = torch.randn(2, 1, 3, 3)
    z = torch.randn(2, 1, 3, 3)
    t = torch.tensor([0.1, 0.8])
    out = perturb(sde, x0, t, z)
    assert torch.allclose(out[1], sde.mean_coeff(t[1]) * x0[1] + sde.marginal_std(t[1]) * z[1])


def test_likelihood_time_sampler_inverts_its_cdf() -> None:
    sde = VPSDE()
    s = LikelihoodTimeSampler(sde, eps=1e-5)
    u = torch.tensor([0.01, 0.2, 0.5, 0.9], dtype=torch.float64)
    t = s.inverse_cdf(u)
    # VP closed form: int beta / sigma^2 dt = log(e^B - 1), so the CDF is analytic.
    lg = lambda tt: torch.log(torch.expm1(sde.integrated_beta(tt)))  # noqa: E731
    cdf = (lg(t) - lg(torch.tensor(1e-5, dtype=torch.float64))) / (
        lg(torch.tensor(1.0, dtype=torch.float64)) - lg(torch.tensor(1e-5, dtype=torch.float64))
    )
    assert torch.allclose(cdf, u, atol=2e-4)
    assert s.normalizer == pytest.approx(
        float(
            lg(torch.tensor(1.0, dtype=torch.float64)) - lg(torch.tensor(1e-5, dtype=torch.float64))
        ),
        rel=1e-4,
    )
