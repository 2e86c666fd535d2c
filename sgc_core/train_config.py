"""The settings of a training run and what it returns.

Their own module so that train.py and train_run.py (the resume state, which compares a saved
run's settings with these) share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from sgc_core.losses import CE_T_MIN


@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in the card and the resume state)."""

    image_size: int
    channels: int = 1
    arch: str = "default"
    width: int = 32
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    balanced: bool = False
    flip: bool = True
    likelihood_weighting: bool = False
    eps: float = 1e-5
    #: Top of the training noise band: t ~ U[eps, t_max]. 1.0 trains the whole diffusion, as
    #: the whole-view ELBO needs; a lesion finder only ever scores a band below ~0.5 (its
    #: calibration picks it there), so a lower t_max spends every step where the classes differ.
    t_max: float = 1.0
    #: Weight of a classification term added to DSM: the cross-entropy of the class posterior
    #: that the denoising scores themselves give under one shared (t, z) per image (the
    #: finder's window score). 0 trains the score network by DSM alone, a purely generative
    #: model; > 0 fine-tunes the same class-conditional denoiser to rank the classes, still
    #: classifying by comparing class-conditional denoising errors.
    ce_weight: float = 0.0
    #: Top of the classification term's noise band (None = ``t_max``): the term can be
    #: trained only where the finder's calibrated scan band reads, instead of over all of
    #: [0.01, t_max] of DSM.
    ce_t_max: float | None = None
    levels: int = 256
    dequantize: bool = True
    sde: dict = field(default_factory=lambda: {"kind": "vp", "beta_min": 0.1, "beta_max": 20.0})
    checkpoint_every: int = 500
    amp: bool = True
    input_range: tuple[float, float] = (0.0, 1.0)
    #: Warm start: a saved model (weights + card) whose weights start the network and its EMA.
    #: A fresh run otherwise starts from seeded random weights; the architecture must match.
    init_weights: str | None = None

    def ce_band(self) -> tuple[float, float]:
        """The classification term's t range: from CE_T_MIN (below it every class denoises
        alike) to ``ce_t_max``, or DSM's ``t_max`` when that is unset."""
        hi = self.t_max if self.ce_t_max is None else self.ce_t_max
        return (max(self.eps, CE_T_MIN), hi)

    def validate(self) -> None:
        if self.arch not in ("seed", "default"):
            raise ValueError(f"--arch must be 'seed' or 'default', got {self.arch!r}")
        for name in ("image_size", "channels", "width", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if not self.eps < self.t_max <= 1.0:
            raise ValueError(f"t_max must satisfy eps < t_max <= 1, got {self.t_max}")
        if self.ce_weight < 0:
            raise ValueError(f"ce_weight must be >= 0, got {self.ce_weight}")
        if self.ce_t_max is not None and not CE_T_MIN < self.ce_t_max <= self.t_max:
            raise ValueError(
                f"ce_t_max must satisfy {CE_T_MIN} < ce_t_max <= t_max, got {self.ce_t_max}"
            )
        if self.likelihood_weighting and self.t_max < 1.0:
            raise ValueError("likelihood weighting samples t over [eps, 1]; it needs t_max = 1")
        lo, hi = self.input_range
        if not hi > lo:
            raise ValueError(
                f"input_range must be (low, high) with high > low, got {self.input_range}"
            )


@dataclass
class TrainResult:
    model: nn.Module  # the EMA weights, in eval mode
    losses: list[float]
    step: int
    architecture: dict
    seconds: float
