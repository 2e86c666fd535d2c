"""The closed-form score of Gaussian class-conditional data: the oracle for the estimators.

If x_0 | y ~ N(mu_y, s^2 I), the SDE marginal is x_t | y ~ N(m(t) mu_y, (m(t)^2 s^2 + sigma(t)^2) I)
for every SDE in ``sgc_core.sde``, so its score is known exactly. ``AnalyticGaussianScore`` has
the network's call signature, so the ODE likelihood, the ELBO and the classifier can be checked
against the exact log-density and the exact Bayes posterior.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sgc_core.sde import SDE


class AnalyticGaussianScore(nn.Module):
    """score(x, t, y) = -(x - m(t) mu_y) / (m(t)^2 s^2 + sigma(t)^2)."""

    def __init__(self, sde: SDE, means: torch.Tensor, std: float) -> None:
        super().__init__()
        self.sde = sde
        self.register_buffer("means", means.clone())
        self.std = float(std)
        self.num_classes = means.shape[0]

    def _var(self, t: torch.Tensor) -> torch.Tensor:
        return self.sde.mean_coeff(t) ** 2 * self.std**2 + self.sde.marginal_std(t) ** 2

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (-1, 1, 1, 1)
        mean = self.sde.mean_coeff(t).view(shape) * self.means[y]
        return -(x - mean) / self._var(t).view(shape)

    def log_prob(self, x: torch.Tensor, y: int) -> torch.Tensor:
        """Exact log N(x; mu_y, s^2 I) per image (nats), the value the estimators must match."""
        d = x[0].numel()
        diff = (x - self.means[y]).reshape(x.shape[0], -1)
        return (
            -0.5 * d * math.log(2 * math.pi * self.std**2) - 0.5 * diff.pow(2).sum(1) / self.std**2
        )

    def sample(self, n: int, y: int, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn((n, *self.means.shape[1:]), generator=generator)
        return self.means[y] + self.std * noise
