"""Training by denoising score matching, and export of a calibrated model.

Loss (Song et al. 2021): E_t E_z |sigma(t) s(x_t, t, y) + z|^2 = |eps_hat - z|^2 per pixel, with
t ~ U(eps, 1), or, with ``likelihood_weighting``, t drawn from q(t) proportional to g^2/sigma^2:
the importance-sampled form of the likelihood weighting lambda = g^2, which makes the loss the
ELBO used at test time (Song et al. 2021, "Maximum likelihood training ...").

Reproducibility: every step's random numbers (batch indices, flips, dequantization, t, z) come
from a generator seeded by (seed, step), so a run resumed from its checkpoint continues exactly
as if it had never stopped. AdamW, gradient clipping, EMA weights (exported), class-balanced
sampling, bf16 autocast on CUDA.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from sgc_core.datasets.base import Dataset, stratified_split
from sgc_core.scaling import to_model_space
from sgc_core.sde import LikelihoodTimeSampler, perturb, sde_from_dict
from sgc_core.unet import architecture_spec, build_score_model

STATE_FILE = "train_state.pt"


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
    levels: int = 256
    dequantize: bool = True
    sde: dict = field(default_factory=lambda: {"kind": "vp", "beta_min": 0.1, "beta_max": 20.0})
    checkpoint_every: int = 500
    amp: bool = True
    input_range: tuple[float, float] = (0.0, 1.0)

    def validate(self) -> None:
        if self.arch not in ("seed", "default"):
            raise ValueError(f"--arch must be 'seed' or 'default', got {self.arch!r}")
        for name in ("image_size", "channels", "width", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
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


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))


def batch_indices(
    labels: list[int], config: TrainConfig, step: int, num_classes: int
) -> torch.Tensor:
    """The dataset indices of ``step``'s batch: epoch permutations, or class-balanced draws."""
    n = len(labels)
    bs = config.batch_size
    if config.balanced:
        lab = torch.tensor(labels)
        counts = torch.bincount(lab, minlength=num_classes).double()
        weights = 1.0 / counts[lab]
        return torch.multinomial(
            weights, bs, replacement=True, generator=_step_generator(config.seed, step)
        )
    start = step * bs
    out = []
    while len(out) < bs:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=_step_generator(config.seed + 7919, epoch))
        out.extend(perm[offset : offset + bs - len(out)].tolist())
    return torch.tensor(out)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror about half of a batch (B, C, H, W) top-bottom, the same draw for any device.

    Top-bottom, not left-right: the preprocessing puts every chest wall on the left, so a
    left-right mirror would teach a model images that serving never shows it. Shared by the
    SGC and the CNN baseline so the two see the same augmentation."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None].to(x.device), x.flip(-2), x)


def dsm_loss(
    model: nn.Module,
    sde,
    x0: torch.Tensor,
    y: torch.Tensor,
    gen: torch.Generator,
    eps: float,
    sampler: LikelihoodTimeSampler | None,
) -> torch.Tensor:
    """Mean over batch and pixels of |eps_hat - z|^2 (t uniform, or ~ q when ``sampler``)."""
    b = x0.shape[0]
    u = torch.rand(b, generator=gen, dtype=torch.float64)
    t = sampler.inverse_cdf(u) if sampler is not None else eps + (1 - eps) * u
    t = t.float().to(x0.device)
    z = torch.randn(x0.shape, generator=gen).to(x0.device)
    xt = perturb(sde, x0, t, z)
    score = model(xt, t, y)
    eps_hat = -sde.marginal_std(t)[:, None, None, None] * score.float()
    return (eps_hat - z).pow(2).mean()


class _Cache:
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


def train(
    config: TrainConfig,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a class-conditional score network on ``dataset``; returns the EMA model.

    With ``out_dir`` a resume state (model, EMA, optimiser, step, losses) is written every
    ``checkpoint_every`` steps and at the end; ``resume=True`` continues from it.
    """
    config.validate()
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    num_classes = len(dataset.class_names)
    present = sorted(set(dataset.labels))
    if len(present) < 2:
        raise ValueError(f"training needs at least two classes with images, found {present}")
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    sde = sde_from_dict(config.sde)
    arch = architecture_spec(
        config.arch, num_classes, config.channels, config.image_size, config.width
    )
    model = build_score_model(arch, sde).to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step = 0
    losses: list[float] = []
    earlier = 0.0
    state_path = Path(out_dir) / STATE_FILE if out_dir is not None else None
    if resume:
        if state_path is None or not state_path.is_file():
            raise ValueError(f"--resume: no training state at {state_path}")
        state = torch.load(state_path, map_location=device, weights_only=False)
        if state["config"] != _comparable(config):
            raise ValueError(
                f"--resume: the saved run's settings differ from these: saved {state['config']}, now {_comparable(config)}"
            )
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        losses = list(state["losses"])
        # Time already spent by the run's earlier sessions: the card records the whole run.
        earlier = float(state.get("seconds", 0.0))
    sampler = LikelihoodTimeSampler(sde, config.eps) if config.likelihood_weighting else None
    use_amp = config.amp and device.type == "cuda"
    cache = _Cache(dataset, enabled=len(dataset) * config.channels * config.image_size**2 * 4 < 8e9)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=step, desc="train", unit="step")
    t0 = time.perf_counter()
    seen = 0
    model.train()
    while step < config.steps:
        gen = _step_generator(config.seed, step)
        idx = batch_indices(dataset.labels, config, step, num_classes)
        x = torch.stack([cache.get(int(i)) for i in idx])
        y = torch.tensor([dataset.labels[int(i)] for i in idx], device=device)
        lo, hi = config.input_range
        x = to_model_space(
            (x - lo) / (hi - lo), config.levels, dequantize=config.dequantize, generator=gen
        )
        if config.flip:
            x = random_flip(x, gen)
        x = x.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = dsm_loss(model, sde, x, y, gen, config.eps, sampler)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {float(loss)} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
            for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
                be.copy_(bm)
        step += 1
        seen += x.shape[0]
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
        if bar is not None:
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(
                loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}", img_s=f"{rate:.0f}"
            )
            bar.update(1)
        if state_path is not None and (step % config.checkpoint_every == 0 or step == config.steps):
            spent = earlier + time.perf_counter() - t0
            _save_state(state_path, model, ema, opt, step, losses, config, spent)
    if bar is not None:
        bar.close()
    ema.eval()
    return TrainResult(ema, losses, step, arch, earlier + time.perf_counter() - t0)


def _comparable(config: TrainConfig) -> dict:
    """The settings a resumed run must share (steps and checkpoint cadence may grow)."""
    d = asdict(config)
    for k in ("steps", "checkpoint_every", "device", "amp"):
        d.pop(k)
    return d


def _save_state(path: Path, model, ema, opt, step, losses, config, seconds: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
            "losses": losses,
            "config": _comparable(config),
            "seconds": seconds,
        },
        tmp,
    )
    tmp.replace(path)


def epochs_to_steps(epochs: float, n: int, batch_size: int) -> int:
    return max(1, math.ceil(epochs * n / batch_size))


def train_and_export(
    config: TrainConfig,
    dataset: Dataset,
    out: str | Path,
    *,
    val_dataset: Dataset | None = None,
    val_fraction: float = 0.2,
    name: str | None = None,
    version: str = "1",
    preprocess: dict | None = None,
    estimator: dict | None = None,
    positive_class: str | None = None,
    target_sensitivity: float = 0.9,
    ood_fpr: float = 0.05,
    priors: list[float] | None = None,
    resume: bool = False,
    progress: bool = True,
    data_description: str = "",
    split: dict | None = None,
) -> tuple[Path, Path]:
    """Train, calibrate on the validation split and write ``<out>.safetensors`` + ``<out>.json``.

    The resume state is kept in ``<out>.train/``. Returns the (weights, card) paths.
    ``split`` (e.g. ``{"seed": 3}``) says how the data set's splits were drawn; it is kept in
    the card as ``training.split`` so evaluation rebuilds the same test split (default: the
    stratified split made here, with ``config.seed``).
    """
    from sgc_core.calibration_fit import calibrate_card
    from sgc_core.checkpoint import save_model

    out = Path(out)
    out = out.with_suffix("") if out.suffix in (".safetensors", ".json") else out
    scaling = (preprocess or {}).get("scaling")
    if scaling is not None:
        declared = {"[0,1]": (0.0, 1.0), "[-1,1]": (-1.0, 1.0)}.get(scaling)
        if declared is None or tuple(config.input_range) != declared:
            raise ValueError(
                f"preprocess scaling {scaling!r} disagrees with the training input_range {tuple(config.input_range)}"
            )
    if val_dataset is None:
        train_set, val_set = stratified_split(dataset, val_fraction, config.seed)
    else:
        train_set, val_set = dataset, val_dataset
    result = train(
        config, train_set, out.with_name(out.name + ".train"), resume=resume, progress=progress
    )
    counts = [train_set.labels.count(i) for i in range(len(dataset.class_names))]
    classes = list(dataset.class_names)
    if positive_class is None:
        positive_class = "malignant" if "malignant" in classes else classes[-1]
    if positive_class not in classes:
        raise ValueError(f"positive class {positive_class!r} is not one of {classes}")
    card = {
        "name": name or out.name,
        "version": version,
        "classes": classes,
        "positive_class": positive_class,
        "image_size": config.image_size,
        "channels": config.channels,
        "input_range": [float(v) for v in config.input_range],
        "quantization_levels": config.levels,
        "preprocess": preprocess or {},
        "sde": config.sde,
        "architecture": result.architecture,
        "estimator": dict(estimator or {}),
        "training": {
            "config": asdict(config),
            "steps": result.step,
            "seconds": round(result.seconds, 1),
            "final_loss": sum(result.losses[-50:]) / max(1, len(result.losses[-50:])),
            "train_images": len(train_set),
            "val_images": len(val_set),
            "class_counts": dict(zip(classes, counts, strict=True)),
            "data": data_description,
            "split": split or {"seed": config.seed, "val_fraction": val_fraction},
        },
        "calibration": {"temperature": 1.0, "priors": priors or [c / sum(counts) for c in counts]},
    }
    if any(p <= 0 for p in card["calibration"]["priors"]):
        card["calibration"]["priors"] = [max(p, 1e-3) for p in card["calibration"]["priors"]]
    card = calibrate_card(result.model, card, val_set, config.device, target_sensitivity, ood_fpr)
    paths = save_model(out, result.model, card)
    (out.with_name(out.name + ".train") / "losses.json").write_text(json.dumps(result.losses))
    return paths
