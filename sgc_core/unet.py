"""Class-conditional score networks s(x, t, y) that return the score (not the noise).

Two configurations share one interface, ``model(x, t, y) -> score`` with x of shape
(N, C, H, W), t of shape (N,) and integer labels y of shape (N,):

* ``seed``: the paper's network family (Sarker et al. 2025, after Song's ScoreNet tutorial):
  a conv encoder/decoder with one stride-2 level per entry of ``channels`` (the paper:
  32-64-128-256-512), a Gaussian Fourier time embedding (dim 256), the class embedding added to
  the time embedding, a dense projection of the embedding added after every conv, GroupNorm and
  the output divided by the marginal std. Unlike the seed, the number of GroupNorm groups is
  chosen to divide the width (the seed's GroupNorm(32, C) fails for C < 32).
* ``default``: our design. Residual blocks with GroupNorm everywhere and FiLM conditioning
  (the embedding predicts a per-channel scale and shift after the norm, a stronger path for the
  label than an additive bias), self-attention at the coarsest level, and a zero-initialised
  output that predicts the noise eps; the score is -eps / sigma(t).

No BatchNorm: its batch statistics mix the noise levels and classes of a batch, so train and
eval outputs differ (a known failure in score models).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from sgc_core.sde import SDE, sde_from_dict


def group_count(channels: int, preferred: int = 32) -> int:
    """The largest divisor of ``channels`` not above ``preferred`` (GroupNorm needs a divisor)."""
    for g in range(min(preferred, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of t (Tancik et al. 2020); fixed weights saved with the model."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        proj = t[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class SeedScoreNet(nn.Module):
    """The paper's UNet shape (see module docstring), parameterised by ``channels``."""

    def __init__(
        self,
        sde: SDE,
        num_classes: int,
        in_channels: int = 3,
        channels: tuple[int, ...] = (32, 64, 128, 256, 512),
        embed_dim: int = 256,
    ) -> None:
        super().__init__()
        self.sde = sde
        self.num_classes = num_classes
        self.embed_t = nn.Sequential(
            GaussianFourierProjection(embed_dim, scale=30.0), nn.Linear(embed_dim, embed_dim)
        )
        self.embed_y = nn.Embedding(num_classes, embed_dim)
        self.enc_conv = nn.ModuleList()
        self.enc_dense = nn.ModuleList()
        self.enc_norm = nn.ModuleList()
        prev = in_channels
        for i, ch in enumerate(channels):
            stride = 1 if i == 0 else 2
            self.enc_conv.append(nn.Conv2d(prev, ch, 3, stride=stride, padding=1, bias=False))
            self.enc_dense.append(nn.Linear(embed_dim, ch))
            self.enc_norm.append(nn.GroupNorm(group_count(ch, 4 if i == 0 else 32), ch))
            prev = ch
        self.dec_conv = nn.ModuleList()
        self.dec_dense = nn.ModuleList()
        self.dec_norm = nn.ModuleList()
        rev = list(reversed(channels))
        for i in range(len(rev) - 1):
            in_ch = rev[i] if i == 0 else 2 * rev[i]
            out_ch = rev[i + 1]
            self.dec_conv.append(
                nn.ConvTranspose2d(
                    in_ch, out_ch, 3, stride=2, padding=1, output_padding=1, bias=False
                )
            )
            self.dec_dense.append(nn.Linear(embed_dim, out_ch))
            self.dec_norm.append(nn.GroupNorm(group_count(out_ch, 32), out_ch))
        self.out = nn.Conv2d(2 * channels[0], in_channels, 3, padding=1)
        self.downsample = 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = F.silu(self.embed_t(t)) + self.embed_y(y)
        h = x
        skips = []
        for conv, dense, norm in zip(self.enc_conv, self.enc_dense, self.enc_norm, strict=True):
            h = F.silu(norm(conv(h) + dense(emb)[:, :, None, None]))
            skips.append(h)
        skips.pop()
        for conv, dense, norm in zip(self.dec_conv, self.dec_dense, self.dec_norm, strict=True):
            h = F.silu(norm(conv(h) + dense(emb)[:, :, None, None]))
            h = torch.cat([h, skips.pop()], dim=1)
        h = self.out(h)
        return h / self.sde.marginal_std(t)[:, None, None, None]


class FiLMResBlock(nn.Module):
    """GroupNorm -> FiLM(scale, shift from the embedding) -> SiLU -> conv, twice, plus a skip."""

    def __init__(self, in_ch: int, out_ch: int, embed_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(group_count(out_ch), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head spatial self-attention with a residual connection."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(group_count(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )[:, 0]
        return x + self.proj(a.transpose(1, 2).reshape(n, c, h, w))


def upsample_cat(h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``cat([nearest-upsample(h), skip])`` along channels, written once into one tensor.

    Why not ``F.interpolate`` then ``torch.cat``: on CPU, nearest upsampling by 2 ran 2-3x
    slower than a broadcast copy, and the cat copies the upsampled maps again; this writes
    each value once, and the values are the same bit for bit.
    """
    n, c, hh, ww = h.shape
    size = skip.shape[-2:]
    if (hh, ww) == tuple(size):
        return torch.cat([h, skip], dim=1)
    if tuple(size) != (2 * hh, 2 * ww):
        return torch.cat([F.interpolate(h, size=size, mode="nearest"), skip], dim=1)
    last = skip.is_contiguous(memory_format=torch.channels_last) and not skip.is_contiguous()
    layout = torch.channels_last if last else torch.contiguous_format
    dtype = torch.promote_types(h.dtype, skip.dtype)  # as torch.cat (mixed under autocast)
    out = torch.empty(
        (n, c + skip.shape[1], *size), dtype=dtype, device=h.device, memory_format=layout
    )
    out[:, :c].unflatten(3, (ww, 2)).unflatten(2, (hh, 2)).copy_(h[:, :, :, None, :, None])
    out[:, c:] = skip
    return out


class FiLMUNet(nn.Module):
    """Our default score network (see module docstring). Predicts eps; returns -eps / sigma."""

    def __init__(
        self,
        sde: SDE,
        num_classes: int,
        in_channels: int = 3,
        width: int = 32,
        multipliers: tuple[int, ...] = (1, 2, 2),
        embed_dim: int = 128,
        attention: bool = True,
    ) -> None:
        super().__init__()
        self.sde = sde
        self.num_classes = num_classes
        self.embed_t = nn.Sequential(
            GaussianFourierProjection(embed_dim, scale=16.0),
            nn.Linear(embed_dim, embed_dim),
            nn.SiLU(),
            nn.Linear(embed_dim, embed_dim),
        )
        self.embed_y = nn.Embedding(num_classes, embed_dim)
        self.embed_out = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        chs = [width * m for m in multipliers]
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        prev = width
        for i, ch in enumerate(chs):
            self.down_blocks.append(FiLMResBlock(prev, ch, embed_dim))
            self.downs.append(
                nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i < len(chs) - 1 else nn.Identity()
            )
            prev = ch
        self.mid1 = FiLMResBlock(prev, prev, embed_dim)
        self.attn = SelfAttention(prev) if attention else nn.Identity()
        self.mid2 = FiLMResBlock(prev, prev, embed_dim)
        self.up_blocks = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chs))):
            self.up_blocks.append(FiLMResBlock(prev + ch, ch, embed_dim))
            prev = ch
            del i
        self.out_norm = nn.GroupNorm(group_count(prev), prev)
        self.out = nn.Conv2d(prev, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.downsample = 2 ** (len(chs) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.embed_out(self.embed_t(t) + self.embed_y(y))
        h = self.inp(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downs, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for block in self.up_blocks:
            h = block(upsample_cat(h, skips.pop()), emb)
        eps = self.out(F.silu(self.out_norm(h)))
        return -eps / self.sde.marginal_std(t)[:, None, None, None]


def build_score_model(architecture: dict, sde: SDE | dict) -> nn.Module:
    """Build a network from a model card's ``architecture`` entry.

    Keys: ``name`` (seed|default), ``num_classes``, ``channels`` (image channels),
    ``image_size``, and for seed ``widths`` (list) / for default ``width`` and ``multipliers``.
    The image size must be divisible by the network's total downsampling.
    """
    if isinstance(sde, dict):
        sde = sde_from_dict(sde)
    arch = dict(architecture)
    name = arch.get("name")
    size = int(arch["image_size"])
    if name == "seed":
        model: nn.Module = SeedScoreNet(
            sde,
            int(arch["num_classes"]),
            int(arch["channels"]),
            tuple(int(c) for c in arch["widths"]),
            int(arch.get("embed_dim", 256)),
        )
    elif name == "default":
        model = FiLMUNet(
            sde,
            int(arch["num_classes"]),
            int(arch["channels"]),
            int(arch["width"]),
            tuple(int(m) for m in arch["multipliers"]),
            int(arch.get("embed_dim", 128)),
            bool(arch.get("attention", True)),
        )
    else:
        raise ValueError(f"unknown architecture {name!r}; expected 'seed' or 'default'")
    if size % model.downsample:
        raise ValueError(
            f"image size {size} is not divisible by the network's downsampling {model.downsample}"
        )
    return model


def architecture_spec(
    name: str,
    num_classes: int,
    channels: int,
    image_size: int,
    width: int = 32,
) -> dict:
    """A complete ``architecture`` dict for the card. ``seed`` at width 32 is the paper's net."""
    if name == "seed":
        # The paper's 5 levels need image_size divisible by 16; small images get fewer levels.
        levels = 5
        while levels > 1 and image_size % (2 ** (levels - 1)):
            levels -= 1
        levels = min(levels, max(1, int(math.log2(image_size)) - 1))
        widths = [width * 2**i for i in range(levels)]
        return {
            "name": "seed",
            "num_classes": num_classes,
            "channels": channels,
            "image_size": image_size,
            "widths": widths,
            "embed_dim": 256,
        }
    if name == "default":
        multipliers = [1, 2, 2] if image_size <= 64 else [1, 1, 2, 2, 4, 4]
        while image_size % (2 ** (len(multipliers) - 1)):
            multipliers = multipliers[:-1]
        return {
            "name": "default",
            "num_classes": num_classes,
            "channels": channels,
            "image_size": image_size,
            "width": width,
            "multipliers": multipliers,
            "embed_dim": max(64, 4 * width),
            "attention": True,
        }
    raise ValueError(f"unknown architecture {name!r}; expected 'seed' or 'default'")
