"""Train, calibrate and export a lesion finder: crops -> score network -> calibrated card.

The engine behind `sgc train-lesion` and benchmarks/train_lesion_model.py. Order matters and
every fitted number sees validation data only: the score network is trained on the train
split's crops; the noise band and the window temperatures are fitted on validation crops;
the view / breast / study calibration, operating points, finding threshold and OOD band on
validation views scanned by the finder itself (:mod:`sgc_core.lesion_fit`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from sgc_core.checkpoint import save_model
from sgc_core.datasets.crops import CropDataError, CropSet, LesionAnnotation
from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_fit import choose_t_range, fit_from_views, score_views, window_temperature
from sgc_core.lesion_scan import LesionScanner
from sgc_core.sde import sde_from_dict
from sgc_core.train import TrainConfig, train

#: Validation crops used to fit the noise band and the window temperatures (a seeded subset).
MAX_FIT_CROPS = 300


def check_inputs(crops: CropSet, notes: Sequence[LesionAnnotation], config: TrainConfig) -> None:
    """Refuse crops and annotations that do not belong together, with one line saying why."""
    if config.image_size != crops.recipe.crop:
        raise CropDataError(
            f"the crops are {crops.recipe.crop} px but the network is built for "
            f"{config.image_size} px"
        )
    for split in ("train", "val"):
        labels = set(crops.labels[crops.splits == split].tolist())
        if len(labels) < 2:
            raise CropDataError(f"the {split} crops hold {len(labels)} class(es); need 2 or more")
    val_views = [n for n in notes if n.split == "val"]
    if not any(n.finding == "malignant" for n in val_views) or all(
        n.finding == "malignant" for n in val_views
    ):
        raise CropDataError("the validation views need malignant and non-malignant ones")


def calibrate(
    model: nn.Module,
    sde_dict: dict,
    crops: CropSet,
    val_notes: Sequence[LesionAnnotation],
    base: LesionCard,
    device: str = "cpu",
    t_max: float = 1.0,
) -> LesionCard:
    """Every fitted number of the card, in order (see the module docstring)."""
    val = crops.dataset("val")
    counts = [max(1, val.labels.count(i)) for i in range(len(base.classes))]
    # A seeded subset bounds the cost of the band and temperature fits on a CPU.
    images, labels = fit_crops(crops)
    card = base.replace(
        priors=tuple(c / sum(counts) for c in counts),
        spacing_mm=crops.recipe.spacing_mm,
        crop=crops.recipe.crop,
        stride=crops.recipe.stride,
    )
    sde = sde_from_dict(sde_dict)
    t_range = choose_t_range(LesionScanner(model, sde, card, device), images, labels, t_max)
    return fit_card(model, sde, card.replace(t_range=t_range), images, labels, val_notes, device)


def fit_card(
    model: nn.Module,
    sde,
    card: LesionCard,
    images: torch.Tensor,
    labels: Sequence[int],
    val_notes: Sequence[LesionAnnotation],
    device: str = "cpu",
) -> LesionCard:
    """The window temperatures (validation crops), then the view / exam maps, thresholds and
    OOD band (validation views scanned with ``card``'s scan settings)."""
    scanner = LesionScanner(model, sde, card, device)
    card = card.replace(
        temperature_coarse=window_temperature(scanner, images, labels, fine=False),
        temperature_fine=window_temperature(scanner, images, labels, fine=True),
    )
    open_card = card.replace(finding_threshold=0.0, max_findings=card.refine_top)
    views = score_views(LesionScanner(model, sde, open_card, device), val_notes)
    return fit_from_views(card, views)


def fit_crops(crops: CropSet) -> tuple[torch.Tensor, list[int]]:
    """The seeded subset of validation crops that the band and temperature fits use."""
    val = crops.dataset("val")
    keep = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:MAX_FIT_CROPS]
    return val.images[keep], [val.labels[int(i)] for i in keep]


def training_record(config: TrainConfig, result, crops: CropSet, data: str) -> dict:
    """The card's account of how the network was trained (settings, budget, crops, data)."""
    return {
        "config": asdict(config),
        "steps": result.step,
        "seconds": round(result.seconds, 1),
        "final_loss": sum(result.losses[-50:]) / max(1, len(result.losses[-50:])),
        "crops": {s: int((crops.splits == s).sum()) for s in ("train", "val", "test")},
        "data": data,
    }


def train_lesion_finder(
    crops: CropSet,
    notes: Sequence[LesionAnnotation],
    config: TrainConfig,
    out: Path,
    *,
    base: LesionCard | None = None,
    name: str | None = None,
    version: str = "1",
    data_description: str = "",
    resume: bool = False,
    progress: bool = True,
    max_seconds: float | None = None,
) -> tuple[Path, Path]:
    """Train on ``crops``' train split, calibrate on the val split, write weights + card
    (``max_seconds``: train.train's time budget; the card's record says the steps done)."""
    check_inputs(crops, notes, config)
    out = Path(out)
    result = train(
        config,
        crops.dataset("train"),
        out.with_name(out.name + ".train"),
        resume=resume,
        progress=progress,
        max_seconds=max_seconds,
    )
    t0 = time.perf_counter()
    val_notes = [n for n in notes if n.split == "val"]
    lesion = calibrate(
        result.model,
        config.sde,
        crops,
        val_notes,
        base or LesionCard(),
        config.device,
        config.t_max,
    )
    card = {
        "name": name or out.name,
        "version": version,
        "classes": list(lesion.classes),
        "positive_class": "malignant",
        "image_size": crops.recipe.crop,
        "channels": 1,
        "input_range": [0.0, 1.0],
        "quantization_levels": config.levels,
        "sde": config.sde,
        "architecture": result.architecture,
        "lesion": lesion.to_dict(),
        "crop_recipe": asdict(crops.recipe),
        "training": training_record(config, result, crops, data_description),
        "calibration": {
            "fitted_on": f"validation split: {int((crops.splits == 'val').sum())} crops, "
            f"{len(val_notes)} views",
            "seconds": round(time.perf_counter() - t0, 1),
        },
    }
    return save_model(out, result.model, card)
