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

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from sgc_core.checkpoint import load_model
from sgc_core.datasets.base import Dataset, stratified_split
from sgc_core.losses import class_ce_loss, dsm_loss
from sgc_core.scaling import to_model_space
from sgc_core.sde import LikelihoodTimeSampler, sde_from_dict
from sgc_core.train_config import TrainConfig, TrainResult
from sgc_core.train_run import (
    STATE_FILE,
    ImageCache,
    ProgressBar,
    RunState,
    new_run,
    resume_run,
    save_state,
)
from sgc_core.unet import architecture_spec, build_score_model

# TrainConfig and TrainResult live in train_config.py; importers keep using this module.
__all__ = [
    "STATE_FILE",
    "TrainConfig",
    "TrainResult",
    "batch_indices",
    "class_ce_loss",
    "dsm_loss",
    "epochs_to_steps",
    "random_flip",
    "train",
    "train_and_export",
]


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


def train(
    config: TrainConfig,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train a class-conditional score network on ``dataset``; returns the EMA model.

    With ``out_dir`` a resume state (model, EMA, optimiser, step, losses) is written every
    ``checkpoint_every`` steps and at the end; ``resume=True`` continues from it.
    ``max_seconds`` ends this session early (after a step, state saved), so a run fits a lease
    of fixed length (a lent GPU) and another can resume it; the result's ``step`` says where.
    """
    num_classes = _check_trainable(config, dataset)
    torch.manual_seed(config.seed)  # the network's initial weights
    device = torch.device(config.device)
    sde = sde_from_dict(config.sde)
    arch = architecture_spec(
        config.arch, num_classes, config.channels, config.image_size, config.width
    )
    run = new_run(config, build_score_model(arch, sde).to(device))
    state_path = Path(out_dir) / STATE_FILE if out_dir is not None else None
    if resume:
        resume_run(run, state_path, config, device)
    elif config.init_weights:
        warm_start(run, config.init_weights, arch)
    sampler = LikelihoodTimeSampler(sde, config.eps) if config.likelihood_weighting else None
    use_amp = config.amp and device.type == "cuda"
    cache = ImageCache(
        dataset, enabled=len(dataset) * config.channels * config.image_size**2 * 4 < 8e9
    )
    bar = ProgressBar(config.steps, run.step) if progress else None
    t0, start = time.perf_counter(), run.step
    run.model.train()
    while run.step < config.steps:
        if max_seconds is not None and run.step > start and time.perf_counter() - t0 > max_seconds:
            break  # out of this session's time: the state below lets another continue
        gen = _step_generator(config.seed, run.step)
        x, y = _batch(cache, config, run.step, num_classes, gen, device)
        loss = _optimise(run, config, sde, (x, y, num_classes), gen, sampler, use_amp)
        run.step += 1
        run.losses.append(loss)
        if on_step is not None:
            on_step(run.step, loss)
        if bar is not None:
            bar.update(run.losses, x.shape[0], t0)
        if run.step % config.checkpoint_every == 0:
            _save(state_path, run, config, t0)
    _save(state_path, run, config, t0)
    if bar is not None:
        bar.close()
    run.ema.eval()
    return TrainResult(run.ema, run.losses, run.step, arch, run.earlier + time.perf_counter() - t0)


def _save(state_path: Path | None, run: RunState, config: TrainConfig, t0: float) -> None:
    """The resume state, with the seconds spent so far (none without an ``out_dir``)."""
    if state_path is not None:
        save_state(state_path, run, config, run.earlier + time.perf_counter() - t0)


def warm_start(run: RunState, path: str, arch: dict) -> None:
    """Start model and EMA from a saved model's weights, so compute already spent on a
    network is not thrown away when its training continues on new data or for longer.
    The saved architecture must be the one this run builds: otherwise the weights mean
    something else, and loading them would be silently wrong."""
    saved, card = load_model(path)
    if card["architecture"] != json.loads(json.dumps(arch)):
        raise ValueError(
            f"--init {path}: its architecture {card['architecture']} is not this run's {arch}"
        )
    run.model.load_state_dict(saved.state_dict())
    run.ema.load_state_dict(saved.state_dict())


def _check_trainable(config: TrainConfig, dataset: Dataset) -> int:
    """The number of classes, after refusing a run that could only fail or mislead later: a
    bad config, an empty set, or fewer than two classes with images."""
    config.validate()
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    present = sorted(set(dataset.labels))
    if len(present) < 2:
        raise ValueError(f"training needs at least two classes with images, found {present}")
    return len(dataset.class_names)


def _batch(
    cache: ImageCache,
    config: TrainConfig,
    step: int,
    num_classes: int,
    gen: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``step``'s batch in model space (dequantized, maybe flipped) with its labels; draws
    from ``gen`` before the loss does, in a fixed order."""
    labels = cache.dataset.labels
    idx = batch_indices(labels, config, step, num_classes)
    x = torch.stack([cache.get(int(i)) for i in idx])
    y = torch.tensor([labels[int(i)] for i in idx], device=device)
    lo, hi = config.input_range
    x = to_model_space(
        (x - lo) / (hi - lo), config.levels, dequantize=config.dequantize, generator=gen
    )
    if config.flip:
        x = random_flip(x, gen)
    return x.to(device), y


def _optimise(
    run: RunState,
    config: TrainConfig,
    sde,
    batch: tuple[torch.Tensor, torch.Tensor, int],
    gen: torch.Generator,
    sampler: LikelihoodTimeSampler | None,
    use_amp: bool,
) -> float:
    """One optimiser step on the DSM loss (plus the weighted classification term) and the
    EMA update; returns the loss."""
    x, y, num_classes = batch
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        loss = dsm_loss(run.model, sde, x, y, gen, config.eps, sampler, config.t_max)
        if config.ce_weight > 0:
            ce = class_ce_loss(run.model, sde, x, y, num_classes, gen, config.ce_band())
            loss = loss + config.ce_weight * ce
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss is {float(loss)} at step {run.step}; lower --lr")
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip)
    run.opt.step()
    decay = min(config.ema_decay, (1 + run.step) / (10 + run.step))
    with torch.no_grad():
        for pe, pm in zip(run.ema.parameters(), run.model.parameters(), strict=True):
            pe.lerp_(pm, 1 - decay)
        for be, bm in zip(run.ema.buffers(), run.model.buffers(), strict=True):
            be.copy_(bm)
    return loss.item()


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
    _check_scaling(preprocess, config)
    if val_dataset is None:
        train_set, val_set = stratified_split(dataset, val_fraction, config.seed)
    else:
        train_set, val_set = dataset, val_dataset
    result = train(
        config, train_set, out.with_name(out.name + ".train"), resume=resume, progress=progress
    )
    classes = list(dataset.class_names)
    positive_class = _positive_class(classes, positive_class)
    counts = [train_set.labels.count(i) for i in range(len(classes))]
    card = _card_head(config, classes, positive_class, result.architecture)
    card.update(name=name or out.name, version=version)
    card["preprocess"] = preprocess or {}
    card["estimator"] = dict(estimator or {})
    split = split or {"seed": config.seed, "val_fraction": val_fraction}
    sets = (train_set, val_set)
    card["training"] = _training_record(
        config, result, sets, counts, classes, data_description, split
    )
    card["calibration"] = {"temperature": 1.0, "priors": _priors(priors, counts)}
    card = calibrate_card(result.model, card, val_set, config.device, target_sensitivity, ood_fpr)
    paths = save_model(out, result.model, card)
    (out.with_name(out.name + ".train") / "losses.json").write_text(json.dumps(result.losses))
    return paths


def _card_head(
    config: TrainConfig, classes: list[str], positive_class: str, architecture: dict
) -> dict:
    """What serving needs to rebuild the network and feed it: classes, input geometry and
    range, SDE and architecture (name, version and the rest are added by the caller)."""
    return {
        "name": "",
        "version": "",
        "classes": classes,
        "positive_class": positive_class,
        "image_size": config.image_size,
        "channels": config.channels,
        "input_range": [float(v) for v in config.input_range],
        "quantization_levels": config.levels,
        "preprocess": {},
        "sde": config.sde,
        "architecture": architecture,
        "estimator": {},
    }


def _check_scaling(preprocess: dict | None, config: TrainConfig) -> None:
    """Refuse a card whose preprocessing scales images to another range than the one the
    network was trained on: serving would feed it inputs it never saw."""
    scaling = (preprocess or {}).get("scaling")
    if scaling is None:
        return
    declared = {"[0,1]": (0.0, 1.0), "[-1,1]": (-1.0, 1.0)}.get(scaling)
    if declared is None or tuple(config.input_range) != declared:
        raise ValueError(
            f"preprocess scaling {scaling!r} disagrees with the training input_range {tuple(config.input_range)}"
        )


def _positive_class(classes: list[str], positive_class: str | None) -> str:
    """The class whose probability the card reports: given, else "malignant", else the last."""
    if positive_class is None:
        positive_class = "malignant" if "malignant" in classes else classes[-1]
    if positive_class not in classes:
        raise ValueError(f"positive class {positive_class!r} is not one of {classes}")
    return positive_class


def _priors(priors: list[float] | None, counts: list[int]) -> list[float]:
    """The given priors, else the training set's class frequencies; never zero, since a zero
    prior would rule its class out whatever the image says."""
    chosen = priors or [c / sum(counts) for c in counts]
    if any(p <= 0 for p in chosen):
        chosen = [max(p, 1e-3) for p in chosen]
    return chosen


def _training_record(
    config: TrainConfig,
    result: TrainResult,
    sets: tuple[Dataset, Dataset],
    counts: list[int],
    classes: list[str],
    data_description: str,
    split: dict,
) -> dict:
    """The card's ``training`` section: how the model was made, to reproduce or compare it."""
    return {
        "config": asdict(config),
        "steps": result.step,
        "seconds": round(result.seconds, 1),
        "final_loss": sum(result.losses[-50:]) / max(1, len(result.losses[-50:])),
        "train_images": len(sets[0]),
        "val_images": len(sets[1]),
        "class_counts": dict(zip(classes, counts, strict=True)),
        "data": data_description,
        "split": split,
    }
