"""Train, calibrate, evaluate and export the bundled lesion finder (sgc_core/models/).

    python -m benchmarks.train_lesion_model                  # the committed model's recipe
    python -m benchmarks.train_lesion_model --device cuda --steps 20000 --width 32 --out /tmp/big

Steps, all through the project's own code (docs/model.md):
1. ``sgc synth --style mixed --hold-out ducts`` writes the training family (seeded; train /
   val / test by patient) and ``--style ducts`` a held-out-vendor set, under ``--data``.
2. ``sgc_core.datasets.crops`` cuts 64 x 64 crops at 0.4 mm (``--crop``/``--spacing`` for
   another window; lesion-centred, jittered; and normal tissue) from every view;
   ``sgc_core.train.train`` trains the class-conditional score network on the train split's
   crops.
3. On the validation split only: the noise band, the window temperatures (crops), then the
   view / breast / study calibration, operating points, finding threshold and OOD band (views
   scanned by the finder itself), ``sgc_core.lesion_fit``.
4. The untouched test split and the held-out style are scanned and measured: per-view AUC,
   malignant vs benign lesion, ECE, localisation (top finding, FROC), exam AUC, OOD rates
   (in-family test views and non-mammography inputs), time per view and per 4-view study.
   Written to ``<out dir>/eval-lesion/report.json`` with the raw per-view rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_OUT = ROOT / "sgc_core" / "models" / "sgc-lesion-mammo"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "lesion-synth")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--studies", type=int, default=600)
    p.add_argument("--held-out-studies", type=int, default=60)
    p.add_argument("--size", default="medium")
    p.add_argument("--difficulty", type=float, default=0.3)
    p.add_argument("--synth-seed", type=int, default=11)
    p.add_argument("--width", type=int, default=16)
    p.add_argument(
        "--crop",
        type=int,
        default=64,
        help="window and training crop in scan pixels (stride: half of it); 128 = 51 mm",
    )
    p.add_argument("--spacing", type=float, default=0.4, help="scan grid, mm per pixel")
    p.add_argument(
        "--background-crops",
        type=int,
        default=2,
        help="normal crops per view, drawn from the breast away from every lesion",
    )
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-t-max",
        type=float,
        default=0.5,
        help="train on t ~ U[eps, T] only; the calibrated scan band then lies below T "
        "(1 = the whole diffusion, as 0.2.0 was trained)",
    )
    p.add_argument(
        "--ce-weight",
        type=float,
        default=0.0,
        help="add this weight of the denoising scores' class cross-entropy to DSM "
        "(sgc_core/train.py class_ce_loss; 0 = DSM alone)",
    )
    p.add_argument(
        "--ce-t-max",
        type=float,
        default=None,
        help="train the classification term on t <= this only (default: --train-t-max)",
    )
    _run_options(p)
    return p.parse_args(argv)


def _run_options(p: argparse.ArgumentParser) -> None:
    """The scan, evaluation and run-mode options (split from parse_args to keep it short)."""
    p.add_argument("--k-coarse", type=int, default=1)
    p.add_argument("--k-fine", type=int, default=4)
    p.add_argument("--val-views", type=int, default=80, help="0 = every validation view")
    p.add_argument(
        "--val-skip",
        type=int,
        default=0,
        help="calibrate on the validation views after the first N: those stay unfitted for "
        "the choice between models (benchmarks/lesion_select.py --views N)",
    )
    p.add_argument("--test-views", type=int, default=120, help="0 = every test view")
    p.add_argument("--held-out-views", type=int, default=80, help="0 = every held-out view")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue the run in <out>.train/")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop training after this long (state kept for --resume), then calibrate: a run "
        "that must fit a lease of fixed length, e.g. a lent GPU",
    )
    p.add_argument("--version", default="0.3.0", help="the version written into the card")
    _start_options(p)
    p.add_argument("--evaluate-only", action="store_true")
    p.add_argument(
        "--no-evaluate",
        action="store_true",
        help="train (or recalibrate) and stop: choose on validation (lesion_select) before "
        "the test split is read",
    )
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="no training: --init's weights with its card's scan settings changed by --set, "
        "every fitted number refitted on validation (temperatures, view/exam maps, "
        "thresholds, OOD band)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --recalibrate: a scan setting of the card (e.g. k_coarse=2), repeatable",
    )


def _start_options(p: argparse.ArgumentParser) -> None:
    """What a run starts from beside --data: weights, mined crops, further draws."""
    p.add_argument(
        "--init", default=None, help="warm start: a saved model whose weights start this run"
    )
    p.add_argument(
        "--hard-negatives",
        type=int,
        default=0,
        help="per training view, add this many of the --init finder's least-normal windows "
        "away from every lesion as normal crops (sgc_core/hard_negatives.py)",
    )
    p.add_argument("--mine-views", type=int, default=0, help="mine only the first N training views")
    p.add_argument(
        "--extra-data",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a `sgc synth` folder whose training split's crops join the training crops "
        "(repeatable; calibration and evaluation stay on --data)",
    )


def make_data(args) -> tuple[Path, Path]:
    """The family (train/val/test) and the held-out style, written once and reused."""
    from sgc_core.synth import write_dataset

    family, held = args.data / "family", args.data / "held-out"
    common = dict(
        size=args.size, difficulty=args.difficulty, normal_fraction=0.25, workers=args.workers
    )
    if not (family / "labels.csv").is_file():
        write_dataset(family, args.studies, seed=args.synth_seed, style="mixed", **common)
    if not (held / "labels.csv").is_file():
        write_dataset(
            held, args.held_out_studies, seed=args.synth_seed + 1, style="ducts", **common
        )
    return family, held


def make_crops(
    folder: Path, workers: int, crop: int = 64, spacing: float = 0.4, background: int = 2
):
    """The folder's crops for one window and number of normal crops per view (cached beside
    it; the default recipe's cache keeps its old name)."""
    from sgc_core.datasets.crops import CropRecipe, CropSet, build_crops, read_synthetic_annotations

    recipe = CropRecipe(
        spacing_mm=spacing, crop=crop, stride=crop // 2, background_crops=background
    )
    name = "crops.npz" if recipe == CropRecipe() else f"crops-{crop}px-{spacing:g}mm.npz"
    if background != CropRecipe().background_crops:
        name = name.replace(".npz", f"-bg{background}.npz")
    cache = folder / name
    if cache.is_file():
        return CropSet.load(cache)
    crops = build_crops(read_synthetic_annotations(folder), recipe, workers=workers)
    crops.save(cache)
    return crops


def check_args(args) -> None:
    """Refuse inconsistent options in one line, before minutes of data generation."""
    from sgc_core.lesion_card import LesionCard

    if args.hard_negatives and not args.init:
        raise SystemExit("--hard-negatives needs --init: the finder whose mistakes are mined")
    if args.recalibrate and not args.init:
        raise SystemExit("--recalibrate needs --init: the model whose weights are recalibrated")
    if args.no_evaluate and args.evaluate_only:
        raise SystemExit("--no-evaluate and --evaluate-only exclude each other")
    if args.set and not args.recalibrate:
        raise SystemExit("--set is for --recalibrate (a trained card's scan settings)")
    try:
        LesionCard().with_settings(args.set)
    except ValueError as exc:
        raise SystemExit(f"--set {exc}") from None
    if args.crop < 16 or args.crop % 16 or args.spacing <= 0:
        raise SystemExit(f"--crop {args.crop} must be a multiple of 16, --spacing positive")
    if (args.crop, args.spacing) != (64, 0.4) and (args.recalibrate or args.evaluate_only):
        raise SystemExit("--crop/--spacing are for training: a saved model keeps its own window")
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise SystemExit(f"--max-minutes must be > 0, got {args.max_minutes}")
    if args.ce_weight < 0:
        raise SystemExit(f"--ce-weight must be >= 0, got {args.ce_weight}")
    if args.ce_t_max is not None and not 0.01 < args.ce_t_max <= args.train_t_max:
        raise SystemExit(f"--ce-t-max must lie in (0.01, --train-t-max], got {args.ce_t_max}")
    if args.extra_data and (args.recalibrate or args.evaluate_only):
        raise SystemExit(
            "--extra-data is for training: --recalibrate and --evaluate-only train not"
        )
    for extra in args.extra_data:
        if not (extra / "synth.json").is_file():
            raise SystemExit(f"--extra-data {extra}: no synth.json (not a `sgc synth` folder)")
    if args.background_crops < 1:
        raise SystemExit(
            f"--background-crops must be >= 1 (the normal class), got {args.background_crops}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.lesion_eval import evaluate_model
    from sgc_core.datasets.crops import read_synthetic_annotations

    family, held = make_data(args)
    notes = read_synthetic_annotations(family)
    if not args.evaluate_only:
        fit(args, family, notes)
    if args.no_evaluate:
        return 0
    held_notes = read_synthetic_annotations(held)
    report = evaluate_model(args, args.out, notes, held_notes, args.out.parent / "eval-lesion")
    print(json.dumps(report["summary"], indent=2))
    return 0


def fit(args, family: Path, notes) -> None:
    """Train, or recalibrate --init, on the family's crops (apart from main: --evaluate-only
    reads whole views, and the crops' first build on a new machine takes minutes)."""
    from sgc_core.lesion_card import LesionCard
    from sgc_core.lesion_train import train_lesion_finder
    from sgc_core.train import TrainConfig

    crops = make_crops(family, args.workers, args.crop, args.spacing, args.background_crops)
    if args.hard_negatives:
        crops = mine(args, crops, notes, family)
    crops = join_extra(args, crops)
    if args.recalibrate:
        recalibrate(args, crops, _cap_val(notes, args.val_views, args.val_skip))
        return
    config = TrainConfig(
        image_size=crops.recipe.crop,
        width=args.width,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        balanced=True,
        checkpoint_every=250,
        init_weights=args.init,
        t_max=args.train_t_max,
        ce_weight=args.ce_weight,
        ce_t_max=args.ce_t_max,
    )
    train_lesion_finder(
        crops,
        _cap_val(notes, args.val_views, args.val_skip),
        config,
        args.out,
        base=LesionCard(k_coarse=args.k_coarse, k_fine=args.k_fine),
        name=args.out.name,
        version=args.version,
        data_description=_describe(args),
        resume=args.resume,
        max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
    )


def recalibrate(args, crops, notes) -> None:
    """--init's weights under other scan settings, refitted on validation, saved as --out.

    Why: a scan setting chosen on validation views (benchmarks/lesion_select.py) changes the
    window scores, so every number fitted from them is fitted again; the weights stay."""
    import time

    from sgc_core.checkpoint import load_model, save_model
    from sgc_core.lesion_card import LesionCard
    from sgc_core.lesion_train import fit_card, fit_crops
    from sgc_core.sde import sde_from_dict

    model, card = load_model(args.init)
    old = LesionCard.from_dict(card["lesion"])
    base = old.with_settings(args.set)
    images, labels = fit_crops(crops)
    val = [n for n in notes if n.split == "val"]
    t0 = time.perf_counter()
    lesion = fit_card(model, sde_from_dict(card["sde"]), base, images, labels, val)
    source = f"{card['name']} {card['version']} ({card['sha256'][:16]})"
    card = dict(card, version=args.version, lesion=lesion.to_dict())
    card["calibration"] = {
        "fitted_on": f"validation split: {len(images)} crops, {len(val)} views of {_data(args)}",
        "seconds": round(time.perf_counter() - t0, 1),
        "recalibrated": f"weights of {source}; scan settings changed: "
        + (", ".join(args.set) or "none"),
    }
    save_model(args.out, model, card)


def mine(args, crops, notes, family: Path):
    """The crops plus the --init finder's hard negatives, cached beside the crops."""
    from sgc_core.checkpoint import read_card
    from sgc_core.datasets.crops import CropSet
    from sgc_core.hard_negatives import add_hard_negatives
    from sgc_core.view_model import load_view_model

    window = f"{args.crop}px-{args.spacing:g}mm-bg{args.background_crops}"
    tag = f"{read_card(args.init)['sha256'][:8]}-{args.hard_negatives}-{args.mine_views}-{window}"
    cache = family / f"crops-hard-{tag}.npz"
    if cache.is_file():
        return CropSet.load(cache)
    finder = load_view_model(args.init)
    out = add_hard_negatives(crops, finder.scanner, notes, args.hard_negatives, args.mine_views)
    print(f"hard negatives: {len(out.labels) - len(crops.labels)} crops added", flush=True)
    out.save(cache)
    return out


def join_extra(args, crops):
    """The crops plus the training split of each --extra-data draw (after mining: the mined
    cache is of --data alone); a folder that cannot be cut is refused in one line."""
    from sgc_core.datasets.crops import CropDataError

    for extra in args.extra_data:
        try:
            more = make_crops(extra, args.workers, args.crop, args.spacing, args.background_crops)
            crops = crops.joined(more, split="train")
        except CropDataError as exc:
            raise SystemExit(f"--extra-data {extra}: {exc}") from None
    return crops


def _cap_val(notes, n: int, skip: int = 0):
    """The validation views after the first ``skip`` (kept for the choice), at most ``n`` of
    them (0 = all: a quicker calibration when small); other splits unchanged."""
    val = [x for x in notes if x.split == "val"][skip:]
    return [x for x in notes if x.split != "val"] + (val[:n] if n else val)


def _describe(args) -> str:
    warm = f"; warm start from {Path(args.init).name}" if args.init else ""
    if args.hard_negatives:
        warm += (
            f"; {args.hard_negatives} hard negatives per training view "
            f"({args.mine_views or 'all'} views) mined with it"
        )
    return _data(args) + warm + "".join(map(_extra_draw, args.extra_data))


def _extra_draw(folder: Path) -> str:
    """An --extra-data draw as the card records it: how to make it again, not where it lay."""
    made = json.loads((folder / "synth.json").read_text())
    c = made["config"]
    types = "".join(f" --lesion-type {t}" for t in c["lesion_types"])
    return (
        f"; training crops also from the train split of sgc synth --studies {made['n_studies']} "
        f"--seed {made['seed']} --style {c['style']}{types} --difficulty {c['difficulty']:g} "
        f"--normal-fraction {c['normal_fraction']:g} ({c['rows']} x {c['cols']})"
    )


def _data(args) -> str:
    return (
        f"sgc synth --studies {args.studies} --seed {args.synth_seed} --size {args.size} "
        f"--difficulty {args.difficulty:g} --normal-fraction 0.25 --style mixed --hold-out ducts; "
        f"held-out: --studies {args.held_out_studies} --seed {args.synth_seed + 1} --style ducts"
    )


if __name__ == "__main__":
    raise SystemExit(main())
