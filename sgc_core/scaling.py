"""Pixel scaling, uniform dequantization and bits/dim.

Why: a likelihood of continuous data is only comparable across images (and meaningful as bits)
when the data is dequantized: an image stored with L grey levels is a point mass per pixel, and
a density model fitted to it can put unbounded density on the grid (Theis et al. 2016). We map
levels to bins of width 2/L in [-1, 1], add uniform noise inside the bin, and report
bits/dim = -(log p(y) + D log(2/L)) / (D ln 2), a lower bound on the discrete model's bits.
"""

from __future__ import annotations

import math

import torch

INPUT_RANGE = (0.0, 1.0)


def to_model_space(
    x01: torch.Tensor,
    levels: int = 256,
    *,
    dequantize: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Map [0, 1] pixels to [-1, 1]; with ``dequantize`` snap to ``levels`` bins and add U(bin).

    Without dequantization the bin centre is used, so repeated calls are deterministic.
    """
    k = torch.clamp(torch.round(x01 * (levels - 1)), 0, levels - 1)
    if dequantize:
        u = torch.rand(x01.shape, generator=generator, dtype=x01.dtype, device="cpu").to(x01.device)
    else:
        u = torch.full_like(x01, 0.5)
    return 2.0 * (k + u) / levels - 1.0


def bits_per_dim(log_density: torch.Tensor, num_dims: int, levels: int = 256) -> torch.Tensor:
    """Bits per dimension of the discretised image from a density in [-1, 1] model space."""
    log_bin = num_dims * math.log(2.0 / levels)
    return -(log_density + log_bin) / (num_dims * math.log(2.0))
