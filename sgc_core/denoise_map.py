"""Per-pixel class-conditional denoising errors under one shared set of (t, eps).

The generative classifier explains itself: with x_t = m(t) x + sigma(t) z and the network's
noise prediction eps_hat(x_t, t, y), the class score is -1/2 sum_pixels mean_k (|eps_hat - z|^2
- |z|^2) (the uniform denoising score of :mod:`sgc_core.elbo`; the -|z|^2 is a control variate
that does not depend on the class). Because every class sees the *same* (t, z), the per-pixel
difference 1/2 (err_normal - err_y) sums to the class score difference: it is a map of where
the image supports class y over normal. It is a denoising score, not a likelihood ratio; the
calibration on validation data turns the window sums into probabilities.

Why a fixed midpoint grid of t in [t_min, t_max] and not random t: the finder scores a few
dozen windows per view with K = 1-4 pairs; random t would make a window's result depend on
a draw, and the label-informative noise levels (chosen on validation crops) are a narrow band.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sgc_core.sde import SDE


@dataclass(frozen=True)
class NoisePlan:
    """K noise levels ``t`` (K,) and noises ``z`` (K, C, H, W), shared by all windows."""

    t: torch.Tensor
    z: torch.Tensor

    @property
    def k(self) -> int:
        return int(self.t.shape[0])


def noise_plan(
    k: int, shape: tuple[int, int, int], t_range: tuple[float, float], seed: int
) -> NoisePlan:
    """Midpoint-rule t in ``t_range`` and seeded standard normal z."""
    lo, hi = (float(v) for v in t_range)
    if not 0.0 < lo < hi <= 1.0:
        raise ValueError(f"t range must satisfy 0 < t_min < t_max <= 1, got {t_range}")
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    t = lo + (hi - lo) * (torch.arange(k, dtype=torch.float32) + 0.5) / k
    z = torch.randn((k, *shape), generator=torch.Generator().manual_seed(seed))
    return NoisePlan(t, z)


@torch.inference_mode()
def class_errors(
    model: nn.Module,
    sde: SDE,
    x: torch.Tensor,
    num_classes: int,
    plan: NoisePlan,
    max_batch: int = 256,
) -> torch.Tensor:
    """(B, Y, H, W) mean over the plan of (eps_hat - z)^2 - z^2, summed over channels.

    ``x`` is (B, C, H, W) in the model's [-1, 1] space.
    """
    b, k = x.shape[0], plan.k
    dev = x.device
    t = plan.t.to(dev)
    z = plan.z.to(dev)
    xt = (
        sde.mean_coeff(t)[:, None, None, None] * x[:, None]
        + sde.marginal_std(t)[:, None, None, None] * z[None]
    )  # (B, K, C, H, W)
    xt = xt[:, :, None].expand(b, k, num_classes, *x.shape[1:]).reshape(-1, *x.shape[1:])
    tt = t[None, :, None].expand(b, k, num_classes).reshape(-1)
    yy = torch.arange(num_classes, device=dev)[None, None].expand(b, k, num_classes).reshape(-1)
    zz = z[None, :, None].expand(b, k, num_classes, *x.shape[1:]).reshape(-1, *x.shape[1:])
    err = torch.empty(xt.shape[0], *x.shape[2:], device=dev)
    for s in range(0, xt.shape[0], max_batch):
        e = slice(s, s + max_batch)
        sigma = sde.marginal_std(tt[e])[:, None, None, None]
        eps_hat = -sigma * model(xt[e], tt[e], yy[e])
        err[e] = ((eps_hat - zz[e]) ** 2 - zz[e] ** 2).sum(1)
    return err.view(b, k, num_classes, *x.shape[2:]).mean(1)


def window_scores(errors: torch.Tensor) -> torch.Tensor:
    """(B, Y, H, W) per-pixel errors -> (B, Y) class scores (higher = more likely)."""
    return -0.5 * errors.double().sum(dim=(2, 3))


def evidence(errors: torch.Tensor, positive: int, reference: int) -> torch.Tensor:
    """(B, H, W) per-pixel support for class ``positive`` over ``reference``."""
    return 0.5 * (errors[:, reference] - errors[:, positive])
