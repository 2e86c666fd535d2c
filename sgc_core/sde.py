"""Forward SDEs with linear drift, dx = a(t) x dt + g(t) dW (Song et al. 2021, ICLR).

Why a small class per SDE: every estimator needs the same handful of closed forms (marginal
mean coefficient m(t), marginal std sigma(t), drift coefficient a(t), g(t)^2 and the prior), so
the ELBO, the probability-flow ODE and training are written once against this interface.
The perturbation kernel is p_0t(x_t | x_0) = N(m(t) x_0, sigma(t)^2 I) for all three.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class _LinearBetaSDE:
    """The part VP and sub-VP share: the linear schedule beta(t) = beta_min + t (beta_max -
    beta_min), its integral B(t), the mean m(t) = exp(-B/2), the drift -beta/2 and the prior
    N(0, I). Why a base: the two differ only in sigma(t) and g^2, so the schedule's closed
    forms are written (and fixed) once."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t: torch.Tensor) -> torch.Tensor:
        """B(t) = int_0^t beta(s) ds."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * self.integrated_beta(t))

    def drift_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(t)

    @property
    def prior_std(self) -> float:
        return 1.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VPSDE(_LinearBetaSDE):
    """Variance-preserving SDE: beta(t) = beta_min + t (beta_max - beta_min), prior N(0, I)."""

    kind: str = "vp"

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        # -expm1(-B) keeps precision at t ~ 1e-5, where 1 - exp(-B) cancels catastrophically.
        return torch.sqrt(-torch.expm1(-self.integrated_beta(t)))

    def g2(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t)


@dataclass(frozen=True)
class SubVPSDE(_LinearBetaSDE):
    """Sub-VP SDE (Song et al. 2021): same mean as VP, g^2 = beta (1 - exp(-2 B(t)))."""

    kind: str = "subvp"

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(-self.integrated_beta(t))

    def g2(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t) * -torch.expm1(-2.0 * self.integrated_beta(t))


@dataclass(frozen=True)
class VESDE:
    """Variance-exploding SDE: sigma(t) = sigma_min (sigma_max / sigma_min)^t, no drift.

    sigma(0) = sigma_min > 0, so the kernel from exact data is approximated by treating the
    data as already carrying sigma_min noise (the usual convention)."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    kind: str = "ve"

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def drift_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def g2(self, t: torch.Tensor) -> torch.Tensor:
        return self.marginal_std(t) ** 2 * 2.0 * math.log(self.sigma_max / self.sigma_min)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def to_dict(self) -> dict:
        return asdict(self)


SDE = VPSDE | SubVPSDE | VESDE


def prior_logp(sde: SDE, z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, prior_std^2 I) summed over all but the batch dimension (nats)."""
    d = z[0].numel()
    s2 = sde.prior_std**2
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * d * math.log(2 * math.pi * s2) - 0.5 * flat.pow(2).sum(1) / s2


def perturb(sde: SDE, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """x_t = m(t) x_0 + sigma(t) z, with t of shape (N,) broadcast over the image dims."""
    shape = (-1,) + (1,) * (x0.dim() - 1)
    return sde.mean_coeff(t).view(shape) * x0 + sde.marginal_std(t).view(shape) * z


def sde_from_dict(spec: dict) -> SDE:
    """Rebuild an SDE from a model card's ``sde`` entry; unknown kinds fail with the choices."""
    spec = dict(spec)
    kind = spec.pop("kind", "vp")
    classes = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
    if kind not in classes:
        raise ValueError(f"unknown SDE kind {kind!r}; expected one of {sorted(classes)}")
    return classes[kind](**spec)


class LikelihoodTimeSampler:
    """Importance sampler for t with density q(t) proportional to g(t)^2 / sigma(t)^2 on [eps, 1].

    Why: the likelihood weighting lambda(t) = g^2 (Song et al. 2021, "Maximum likelihood
    training of score-based diffusion models") makes the DSM loss an ELBO, but its weight
    g^2/sigma^2 blows up like 1/t at small t. Sampling t from that weight turns the integrand
    into a bounded one; for every SDE here the inverse CDF is tabulated once on a dense grid
    (geometric near eps, where the mass is) and inverted by linear interpolation.
    """

    def __init__(self, sde: SDE, eps: float = 1e-5, grid: int = 8192) -> None:
        self.eps = eps
        t = torch.cat(
            [
                torch.logspace(math.log10(eps), -2, grid // 2, dtype=torch.float64),
                torch.linspace(1e-2, 1.0, grid // 2 + 1, dtype=torch.float64)[1:],
            ]
        )
        w = sde.g2(t) / sde.marginal_std(t) ** 2
        cdf = torch.cat(
            [
                torch.zeros(1, dtype=torch.float64),
                torch.cumsum(0.5 * (w[1:] + w[:-1]) * t.diff(), 0),
            ]
        )
        self.normalizer = float(cdf[-1])
        self._t = t
        self._cdf = cdf / cdf[-1]
        self._sde = sde

    def inverse_cdf(self, u: torch.Tensor) -> torch.Tensor:
        """Map u in [0, 1] to t with q-quantile u (float64 tables, returns u's dtype)."""
        u64 = u.detach().to(torch.float64).cpu().clamp(0.0, 1.0)
        idx = torch.searchsorted(self._cdf, u64).clamp(1, len(self._cdf) - 1)
        c0, c1 = self._cdf[idx - 1], self._cdf[idx]
        t0, t1 = self._t[idx - 1], self._t[idx]
        frac = (u64 - c0) / (c1 - c0).clamp_min(1e-300)
        return (t0 + frac * (t1 - t0)).to(device=u.device, dtype=u.dtype)

    def density(self, t: torch.Tensor) -> torch.Tensor:
        """q(t) = (g^2 / sigma^2) / Z."""
        t64 = t.to(torch.float64)
        return (self._sde.g2(t64) / self._sde.marginal_std(t64) ** 2 / self.normalizer).to(t.dtype)
