"""A training run's state between steps: weights, EMA, optimiser, step and losses, the resume
file that holds them, the decoded-image cache and the progress bar.

Split from train.py so that file reads as the method (batches, loss, optimiser step) and this
one as the bookkeeping that lets a run stop and continue exactly where it was.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from sgc_config.atomic import replacing
from sgc_core.datasets.base import Dataset
from sgc_core.train_config import TrainConfig

STATE_FILE = "train_state.pt"


@dataclass
class RunState:
    """The mutable state of a training run: what a checkpoint holds and a resume restores."""

    model: nn.Module
    ema: nn.Module
    opt: torch.optim.Optimizer
    step: int = 0
    losses: list[float] = field(default_factory=list)
    earlier: float = 0.0  # seconds spent by the run's earlier sessions


def new_run(config: TrainConfig, model: nn.Module) -> RunState:
    """A fresh run: the EMA starts as a copy of the initial weights."""
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return RunState(model, ema, opt)


def resume_run(run: RunState, state_path: Path | None, config: TrainConfig, device) -> None:
    """Load the saved state into ``run``; refuse one saved with other settings, since a
    resumed run must continue exactly as if it had never stopped."""
    if state_path is None or not state_path.is_file():
        raise ValueError(f"--resume: no training state at {state_path}")
    state = torch.load(state_path, map_location=device, weights_only=False)
    # A state saved before t_max existed trained the whole diffusion, before ce_weight by DSM,
    # before ce_t_max the term over DSM's band.
    saved = {"t_max": 1.0, "ce_weight": 0.0, "ce_t_max": None, **state["config"]}
    if saved != comparable(config):
        raise ValueError(
            f"--resume: the saved run's settings differ from these: saved {saved}, now {comparable(config)}"
        )
    run.model.load_state_dict(state["model"])
    run.ema.load_state_dict(state["ema"])
    run.opt.load_state_dict(state["opt"])
    run.step = int(state["step"])
    run.losses = list(state["losses"])
    # Time already spent by the run's earlier sessions: the card records the whole run.
    run.earlier = float(state.get("seconds", 0.0))


class ImageCache:
    """Keeps decoded training images in memory after first use (exact values, so a resumed run
    sees the same pixels as an uninterrupted one)."""

    def __init__(self, dataset: Dataset, enabled: bool) -> None:
        self.dataset = dataset
        self.enabled = enabled
        self.items: dict[int, torch.Tensor] = {}

    def get(self, i: int) -> torch.Tensor:
        if i in self.items:
            return self.items[i]
        x, _ = self.dataset[i]
        x = x.float()
        if self.enabled:
            self.items[i] = x
        return x


class ProgressBar:
    """The progress bar: the recent mean loss and the images per second."""

    def __init__(self, total: int, initial: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="train", unit="step")
        self.seen = 0

    def update(self, losses: list[float], batch: int, t0: float) -> None:
        self.seen += batch
        rate = self.seen / max(time.perf_counter() - t0, 1e-9)
        recent = losses[-20:]
        self.bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", img_s=f"{rate:.0f}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def comparable(config: TrainConfig) -> dict:
    """The settings a resumed run must share (steps and checkpoint cadence may grow)."""
    d = asdict(config)
    for k in ("steps", "checkpoint_every", "device", "amp"):
        d.pop(k)
    return d


def save_state(path: Path, run: RunState, config: TrainConfig, seconds: float = 0.0) -> None:
    """Write the resume state: replaced whole (sgc_config/atomic.py: temporary file, fsync,
    rename), so a run killed while saving keeps its previous state."""
    state = {
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict(),
        "opt": run.opt.state_dict(),
        "step": run.step,
        "losses": run.losses,
        "config": comparable(config),
        "seconds": seconds,
    }
    with replacing(path) as tmp:
        torch.save(state, tmp)
