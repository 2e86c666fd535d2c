"""A discriminative baseline: a small ResNet-style CNN trained with cross-entropy.

Why it exists: the score-based classifier must be compared with the obvious alternative on the
same data and the same budget (``benchmarks/model_quality.py``). It reads the same
``Dataset`` protocol ([0, 1] images, ``labels``, ``class_names``), draws its batches with the
same ``sgc_core.train.batch_indices`` (epoch permutations or class-balanced draws, seeded per
step) and counts its budget in the same unit, optimiser steps x batch size.

Architecture (He et al. 2016, "Deep residual learning"): a stride-2 3x3 stem (as ResNet's stem
downsamples, which cuts the cost ~4x on a CPU), one basic block per stage
(two 3x3 convs, GroupNorm, a projection shortcut where the shape changes), a stride-2 entry to
every stage after the first, global average pooling and a linear head. GroupNorm rather than
BatchNorm so that tiny batches and train/eval mode behave the same. Calibration: a temperature
on the logits fitted on validation (Guo et al. 2017), the same method the SGC card uses.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sgc_core.datasets.base import Dataset
from sgc_core.train import TrainConfig, batch_indices, random_flip
from sgc_core.unet import group_count


@dataclass
class BaselineConfig:
    """A CNN training run; ``steps * batch_size`` is the budget shared with the SGC."""

    image_size: int
    channels: int = 1
    width: int = 16
    stages: int = 4
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.99
    seed: int = 0
    balanced: bool = False
    flip: bool = True
    device: str = "cpu"

    def validate(self) -> None:
        for name in ("image_size", "channels", "width", "stages", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")


class BasicBlock(nn.Module):
    """conv-norm-relu-conv-norm plus the (projected) input, then relu."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(group_count(out_ch, 8), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(group_count(out_ch, 8), out_ch)
        self.short = (
            nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.GroupNorm(group_count(out_ch, 8), out_ch),
            )
            if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + self.short(x))


class SmallResNet(nn.Module):
    """Stem + ``stages`` basic blocks (widths w, 2w, 4w, ...) + pooled linear head."""

    def __init__(self, num_classes: int, channels: int = 1, width: int = 16, stages: int = 4):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
            nn.GroupNorm(group_count(width, 8), width),
            nn.ReLU(),
        )
        blocks = []
        prev = width
        for i in range(stages):
            ch = width * 2 ** min(i, 3)
            blocks.append(BasicBlock(prev, ch, 1 if i == 0 else 2))
            prev = ch
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images in [0, 1] (centred here so callers pass the data set's range)."""
        h = self.blocks(self.stem(2.0 * x - 1.0))
        return self.head(h.mean(dim=(2, 3)))


@dataclass
class BaselineResult:
    model: SmallResNet  # the EMA weights, in eval mode
    losses: list[float]
    seconds: float
    config: dict


def train_baseline(
    config: BaselineConfig, dataset: Dataset, *, progress: bool = False
) -> BaselineResult:
    """Train the CNN with AdamW + cosine decay and return its EMA weights."""
    config.validate()
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    num_classes = len(dataset.class_names)
    if len(set(dataset.labels)) < 2:
        raise ValueError("training needs at least two classes with images")
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = SmallResNet(num_classes, config.channels, config.width, config.stages).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    # batch_indices only reads batch_size, seed and balanced from a TrainConfig.
    sampling = TrainConfig(
        image_size=config.image_size,
        batch_size=config.batch_size,
        seed=config.seed,
        balanced=config.balanced,
    )
    images = torch.stack([dataset[i][0].float() for i in range(len(dataset))])
    labels = torch.tensor(dataset.labels)
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="cnn", unit="step")
    t0 = time.perf_counter()
    model.train()
    for step in range(config.steps):
        idx = batch_indices(dataset.labels, sampling, step, num_classes)
        x, y = images[idx].to(device), labels[idx].to(device)
        if config.flip:
            x = random_flip(x, torch.Generator().manual_seed(config.seed * 1_000_003 + step))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        losses.append(loss.item())
        if bar is not None:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    ema.eval()
    return BaselineResult(ema, losses, time.perf_counter() - t0, asdict(config))


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, device: str = "cpu"
) -> torch.Tensor:
    """(N, Y) logits of [0, 1] images (N, C, H, W)."""
    model.eval()
    out = [
        model(images[s : s + batch_size].float().to(device)).cpu()
        for s in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out)
