"""The training losses: denoising score matching, and the optional classification term.

Why a module of their own: train.py runs the loop (batches, optimiser, EMA, resume); these are
the two objectives it can combine (``TrainConfig.ce_weight``), each a function of the network
and one batch, testable without a training run.
"""

from __future__ import annotations

import torch
from torch import nn

from sgc_core.sde import LikelihoodTimeSampler, perturb

#: The classification term's lowest t: below it every class denoises alike (docs/model.md),
#: so its gradient there is noise.
CE_T_MIN = 0.01


def dsm_loss(
    model: nn.Module,
    sde,
    x0: torch.Tensor,
    y: torch.Tensor,
    gen: torch.Generator,
    eps: float,
    sampler: LikelihoodTimeSampler | None,
    t_max: float = 1.0,
) -> torch.Tensor:
    """Mean over batch and pixels of |eps_hat - z|^2 (t ~ U[eps, t_max], or ~ q when
    ``sampler``)."""
    b = x0.shape[0]
    u = torch.rand(b, generator=gen, dtype=torch.float64)
    t = sampler.inverse_cdf(u) if sampler is not None else eps + (t_max - eps) * u
    t = t.float().to(x0.device)
    z = torch.randn(x0.shape, generator=gen).to(x0.device)
    xt = perturb(sde, x0, t, z)
    score = model(xt, t, y)
    eps_hat = -sde.marginal_std(t)[:, None, None, None] * score.float()
    return (eps_hat - z).pow(2).mean()


def class_ce_loss(
    model: nn.Module,
    sde,
    x0: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    gen: torch.Generator,
    t_range: tuple[float, float],
) -> torch.Tensor:
    """Cross-entropy of the class posterior softmax_y(-1/2 sum_pixels |eps_hat_y - z|^2),
    one (t, z) per image shared by every class: the window score the finder classifies with
    (sgc_core/denoise_map.py), so the term trains the decision the finder makes."""
    b, lo, hi = x0.shape[0], *t_range
    t = (lo + (hi - lo) * torch.rand(b, generator=gen, dtype=torch.float64)).float()
    z = torch.randn(x0.shape, generator=gen).to(x0.device)
    t = t.to(x0.device)
    xt = perturb(sde, x0, t, z)
    rep = (num_classes, *([1] * (x0.dim() - 1)))
    yy = torch.arange(num_classes, device=x0.device).repeat_interleave(b)
    tt = t.repeat(num_classes)
    eps_hat = -sde.marginal_std(tt)[:, None, None, None] * model(xt.repeat(rep), tt, yy).float()
    err = (eps_hat - z.repeat(rep)).pow(2).flatten(1).sum(1).view(num_classes, b).T
    return nn.functional.cross_entropy(-0.5 * err, y)
