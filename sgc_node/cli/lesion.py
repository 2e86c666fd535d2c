"""`sgc train-lesion`: train, calibrate and export a lesion finder from annotated views."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("train-lesion")
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model path to write.")
@click.option(
    "--crops",
    type=click.Path(path_type=Path),
    default=None,
    help="Crop cache (.npz): read if it exists, else cut from DATA and written here.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["synthetic", "cbis-ddsm", "vindr-mammo", "inbreast"]),
    default="synthetic",
    show_default=True,
    help="DATA's layout: a `sgc synth` folder, or a real data set as published "
    "(lesions from CBIS-DDSM ROI masks, VinDr-Mammo boxes, INbreast contours).",
)
@click.option("--steps", type=int, default=3000, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--width", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--train-t-max",
    type=float,
    default=0.5,
    show_default=True,
    help="Train on noise levels t <= this only; the calibrated scan band stays below it.",
)
@click.option(
    "--ce-weight",
    type=float,
    default=0.0,
    show_default=True,
    help="Add this weight of the denoising scores' class cross-entropy to DSM (the bundled "
    "finder's last 600 steps used 1; 0 trains by DSM alone).",
)
@click.option(
    "--ce-t-max",
    type=float,
    default=None,
    help="Train the cross-entropy term on noise levels t <= this only [default: --train-t-max].",
)
@click.option("--k-coarse", type=int, default=1, show_default=True)
@click.option("--k-fine", type=int, default=8, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes cutting crops.")
@click.option("--resume", is_flag=True, help="Continue the run saved in OUT.train/.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_lesion_cmd(data: Path, out: Path, crops: Path | None, fmt: str, **o) -> None:
    """Train a lesion finder on DATA: a `sgc synth` folder (or any folder whose labels.csv has
    path, finding, split, lesion_row, lesion_col, lesion_radius_px per view), or CBIS-DDSM,
    VinDr-Mammo or INbreast in its published layout (--format)."""
    import torch

    from sgc_core.datasets.crops import CropDataError, CropRecipe, CropSet, build_crops
    from sgc_core.datasets.lesion_notes import read_lesion_annotations
    from sgc_core.lesion_card import LesionCard
    from sgc_core.lesion_train import train_lesion_finder
    from sgc_core.train import TrainConfig

    if o["device"].startswith("cuda") and not torch.cuda.is_available():
        raise click.ClickException(f"--device {o['device']}: CUDA is not available here")
    try:
        notes = read_lesion_annotations(data, fmt, seed=o["seed"])
        if crops is not None and crops.is_file():
            crop_set = CropSet.load(crops)
        else:
            crop_set = build_crops(notes, CropRecipe(seed=o["seed"]), workers=o["workers"])
            if crops is not None:
                crop_set.save(crops)
        config = TrainConfig(
            image_size=crop_set.recipe.crop,
            width=o["width"],
            steps=o["steps"],
            batch_size=o["batch_size"],
            lr=o["lr"],
            seed=o["seed"],
            device=o["device"],
            balanced=True,
            t_max=o["train_t_max"],
            ce_weight=o["ce_weight"],
            ce_t_max=o["ce_t_max"],
        )
        config.validate()
        weights, card_path = train_lesion_finder(
            crop_set,
            notes,
            config,
            out,
            base=LesionCard(k_coarse=o["k_coarse"], k_fine=o["k_fine"]),
            data_description=f"annotated views ({fmt}): {data}",
            resume=o["resume"],
            progress=not o["quiet"],
        )
    except (CropDataError, ValueError, FloatingPointError) as exc:
        raise click.ClickException(str(exc)) from None
    lesion = json.loads(Path(card_path).read_text())["lesion"]
    click.echo(f"wrote {weights} and {card_path}")
    click.echo(
        f"noise band t {lesion['t_range']}, view operating point {lesion['operating_point']:.4g}, "
        f"finding threshold {lesion['finding_threshold']:.4g}"
    )


COMMANDS = [train_lesion_cmd]
