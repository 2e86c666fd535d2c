"""`sgc train` and `sgc evaluate`: the score-based classifier's training and evaluation.

torch and sgc_core are imported inside the commands so `sgc --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

FORMAT_CHOICES = ["auto", "generic", "synthetic", "cbis-ddsm", "vindr-mammo", "inbreast"]


#: The data set argument of `sgc train` and `sgc evaluate`: one definition, so both read the
#: same layouts and say so in the same words.
_DATA_OPTION = click.option(
    "--data",
    required=True,
    type=click.Path(exists=True),
    help="Folder per class, CSV path,label, or a mammography data set folder (see --format).",
)


def _open(data: str, image_size: int, channels: int, class_names: list[str] | None = None):
    """The data set and the preprocessing parameters stored in the card (DICOM files only)."""
    from sgc_core.datasets import open_dataset
    from sgc_core.preprocess import PreprocessConfig, preprocess_file

    # DICOM files go through the mammography preprocessing, scaled to the loaders' [0, 1].
    config = PreprocessConfig(image_size=image_size, channels=channels, scaling="[0,1]")

    def transform(path: Path):
        return preprocess_file(path, config).tensor

    try:
        return open_dataset(data, image_size, channels, transform, class_names), config.to_dict()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _mammo_format(fmt: str, data: str) -> str | None:
    """The mammography layout to use, or None for the generic folder/CSV loaders."""
    from sgc_core.datasets.formats import detect_format

    if fmt == "auto":
        return detect_format(data)
    return None if fmt == "generic" else fmt


def _open_mammo(fmt: str, data: str, preprocess, seed: int):
    from sgc_core.datasets.formats import open_mammography

    try:
        return open_mammography(fmt, data, preprocess, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None


def split_seed(card: dict) -> int:
    """The seed the model's training split its data set with (``training.split.seed``).

    Why: a seeded split (INbreast's patients, the validation part of CBIS-DDSM and VinDr)
    differs per seed; evaluating with another seed than training's puts training patients in
    the test split. Cards written before the split was recorded: `sgc train` drew the split
    with its ``--seed``, which is ``training.config.seed``.
    """
    training = card.get("training") or {}
    seed = (training.get("split") or {}).get("seed")
    if seed is None:
        seed = (training.get("config") or {}).get("seed", 0)
    return int(seed)


@click.command("train")
@_DATA_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES),
    default="auto",
    show_default=True,
    help="Data set layout; mammography layouts use their own train/val splits.",
)
@click.option("--clahe", is_flag=True, help="CLAHE in preprocessing (mammography layouts).")
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="Output model path (writes OUT.safetensors + OUT.json).",
)
@click.option("--image-size", type=int, default=64, show_default=True)
@click.option(
    "--channels", type=int, default=1, show_default=True, help="Image channels (the paper: 3)."
)
@click.option(
    "--arch", type=click.Choice(["seed", "default"]), default="default", show_default=True
)
@click.option("--width", type=int, default=32, show_default=True, help="Base channel width.")
@click.option(
    "--steps", type=int, default=None, help="Optimiser steps (default 1000 unless --epochs)."
)
@click.option(
    "--epochs",
    type=float,
    default=None,
    help="Epochs over the training split (alternative to --steps).",
)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
@click.option(
    "--balanced/--no-balanced", default=False, show_default=True, help="Class-balanced sampling."
)
@click.option(
    "--flip/--no-flip",
    default=True,
    show_default=True,
    help="Random top-bottom flips of training images (image rows; left-right is fixed by preprocessing).",
)
@click.option("--resume", is_flag=True, help="Continue the run saved in OUT.train/.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option(
    "--likelihood-weighting",
    is_flag=True,
    help="Importance-sample t by g^2/sigma^2 (ELBO training).",
)
@click.option("--target-sensitivity", type=float, default=0.9, show_default=True)
@click.option("--ood-fpr", type=float, default=0.05, show_default=True)
@click.option(
    "--k", "k", type=int, default=16, show_default=True, help="ELBO (t, eps) pairs per image."
)
@click.option("--name", default=None, help="Model name for the card (default: OUT's file name).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(**o) -> None:
    """Train a class-conditional score model, calibrate it on the validation split, export it."""
    import torch

    from sgc_core.train import train_and_export

    if o["steps"] is not None and o["epochs"] is not None:
        raise click.UsageError("give --steps or --epochs, not both")
    torch.manual_seed(o["seed"])
    fmt, ds, val_ds, preprocess, n_train = _training_data(o)
    if o["device"].startswith("cuda") and not torch.cuda.is_available():
        raise click.ClickException(f"--device {o['device']}: CUDA is not available here")
    try:
        weights, card_path = train_and_export(
            _train_config(o, n_train),
            ds,
            o["out"],
            val_dataset=val_ds,
            val_fraction=o["val_fraction"],
            name=o["name"],
            resume=o["resume"],
            progress=not o["quiet"],
            target_sensitivity=o["target_sensitivity"],
            ood_fpr=o["ood_fpr"],
            estimator={"k": o["k"]},
            data_description=f"{fmt or 'generic'}: {o['data']}",
            preprocess=preprocess,
            # The layout's patient split was drawn with --seed: `sgc evaluate` redraws it from here.
            split={"seed": o["seed"], "format": fmt} if fmt else None,
        )
    except (ValueError, FloatingPointError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_trained(weights, card_path)


def _training_data(o: dict):
    """(layout, training set, validation set or None, the card's preprocessing, training
    images): a mammography layout brings its own train/val split, a generic folder or CSV is
    split later by --val-fraction."""
    fmt = _mammo_format(o["fmt"], o["data"])
    if fmt is None:
        ds, preprocess = _open(o["data"], o["image_size"], o["channels"])
        return None, ds, None, preprocess, round(len(ds) * (1 - o["val_fraction"]))
    from sgc_core.preprocess import PreprocessConfig

    config = PreprocessConfig(
        image_size=o["image_size"], channels=o["channels"], scaling="[0,1]", clahe=o["clahe"]
    )
    full = _open_mammo(fmt, o["data"], config, o["seed"])
    ds, val_ds = full.subset("train"), full.subset("val")
    if not len(ds) or not len(val_ds):
        raise click.ClickException(f"{o['data']}: the {fmt} data set has no train or val split")
    return fmt, ds, val_ds, config.to_dict(), len(ds)


def _train_config(o: dict, n_train: int):
    """The TrainConfig of the command's options; --epochs becomes steps over ``n_train``."""
    from sgc_core.train import TrainConfig, epochs_to_steps

    steps = o["steps"] or 1000
    if o["epochs"] is not None:
        steps = epochs_to_steps(o["epochs"], n_train, o["batch_size"])
    return TrainConfig(
        image_size=o["image_size"],
        channels=o["channels"],
        arch=o["arch"],
        width=o["width"],
        steps=steps,
        batch_size=o["batch_size"],
        lr=o["lr"],
        seed=o["seed"],
        device=o["device"],
        balanced=o["balanced"],
        flip=o["flip"],
        likelihood_weighting=o["likelihood_weighting"],
    )


def _echo_trained(weights: Path, card_path: Path) -> None:
    """Where the model went and what calibration chose, from the card as written."""
    card = json.loads(Path(card_path).read_text())
    val = card["metrics"]["validation"]
    click.echo(f"wrote {weights} and {card_path}")
    click.echo(
        f"validation: accuracy {val['accuracy']:.3f}, AUC {val['auc'] if val['auc'] is None else round(val['auc'], 3)}, "
        f"temperature {card['calibration']['temperature']:.4g}, threshold {card['operating_point']['threshold']:.4g}"
    )


@click.command("evaluate")
@click.option(
    "--model", "model_path", required=True, type=click.Path(), help="Model path (OUT of sgc train)."
)
@_DATA_OPTION
@click.option(
    "--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="auto", show_default=True
)
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train"]),
    default="test",
    show_default=True,
    help="Which split of a mammography layout to evaluate on.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(),
    help="Folder for metrics.json, roc.png, reliability.png.",
)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--method",
    type=click.Choice(["elbo", "ode"]),
    default=None,
    help="Override the card's estimator.",
)
@click.option("--k", type=int, default=None, help="Override the ELBO's K.")
@click.option("--batch-size", type=int, default=16, show_default=True)
def evaluate_cmd(
    model_path: str,
    data: str,
    fmt: str,
    split: str,
    out: str,
    device: str,
    method: str | None,
    k: int | None,
    batch_size: int,
) -> None:
    """Accuracy, balanced accuracy, AUC, sensitivity/specificity, F1, ECE, confusion matrix + plots."""
    from sgc_core.checkpoint import ModelFileError
    from sgc_core.evaluation import evaluate
    from sgc_core.inference import load_classifier

    override = {key: v for key, v in (("method", method), ("k", k)) if v is not None}
    try:
        clf = load_classifier(model_path, device, estimator=override or None)
    except ModelFileError as exc:
        raise click.ClickException(str(exc)) from None
    mammo = _mammo_format(fmt, data)
    if mammo is None:
        ds, _ = _open(data, clf.card.image_size, clf.card.channels, clf.classes)
    else:
        from sgc_core.preprocess import PreprocessConfig

        # The card's own preprocessing: evaluation never disagrees with training or serving.
        config = PreprocessConfig.from_dict(clf.card.data["preprocess"])
        seed = split_seed(clf.card.data)
        ds = _open_mammo(mammo, data, config, seed=seed).subset(split)
        if not len(ds):
            raise click.ClickException(f"{data}: no images in the {split} split")
        click.echo(f"{split} split of {mammo} drawn with the model's split seed {seed}")
    try:
        m = evaluate(clf, ds, out, batch_size=batch_size, progress=True)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
    click.echo(
        f"{m['n']} images: accuracy {m['accuracy']:.3f}, balanced {m['balanced_accuracy']:.3f}, AUC {auc}, ECE {m['ece']:.3f}"
    )
    click.echo(f"wrote {Path(out) / 'metrics.json'}, roc.png, reliability.png")


COMMANDS = [train_cmd, evaluate_cmd]
