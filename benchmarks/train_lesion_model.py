"""Train, calibrate, evaluate and export the bundled lesion finder (sgc_core/models/).

    python benchmarks/train_lesion_model.py                  # the committed model's recipe
    python benchmarks/train_lesion_model.py --device cuda --steps 20000 --width 32 --out /tmp/big

Steps, all through the project's own code (docs/model.md):
1. ``sgc synth --style mixed --hold-out ducts`` writes the training family (seeded; train /
   val / test by patient) and ``--style ducts`` a held-out-vendor set, under ``--data``.
2. ``sgc_core.datasets.crops`` cuts 64 x 64 crops at 0.4 mm (lesion-centred, jittered; and
   normal tissue) from every view; ``sgc_core.train.train`` trains the class-conditional
   score network on the train split's crops.
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
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k-coarse", type=int, default=2)
    p.add_argument("--k-fine", type=int, default=8)
    p.add_argument("--val-views", type=int, default=0, help="0 = every validation view")
    p.add_argument("--test-views", type=int, default=0, help="0 = every test view")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue the run in <out>.train/")
    p.add_argument("--evaluate-only", action="store_true")
    return p.parse_args(argv)


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


def make_crops(folder: Path, workers: int):
    from sgc_core.datasets.crops import CropRecipe, CropSet, build_crops, read_synthetic_annotations

    cache = folder / "crops.npz"
    if cache.is_file():
        return CropSet.load(cache)
    crops = build_crops(read_synthetic_annotations(folder), CropRecipe(), workers=workers)
    crops.save(cache)
    return crops


def train_model(args, crops):
    from sgc_core.train import TrainConfig, train

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
    )
    out_dir = args.out.with_name(args.out.name + ".train")
    result = train(config, crops.dataset("train"), out_dir, resume=args.resume, progress=True)
    return result, config


def calibrate(args, model, sde_dict, crops, val_notes):
    """Everything fitted on validation data, in order (see the module docstring)."""
    from sgc_core.lesion_card import LesionCard
    from sgc_core.lesion_fit import choose_t_range, fit_from_views, score_views, window_temperature
    from sgc_core.lesion_scan import LesionScanner
    from sgc_core.sde import sde_from_dict

    val = crops.dataset("val")
    counts = [max(1, val.labels.count(i)) for i in range(3)]
    sde = sde_from_dict(sde_dict)
    card = LesionCard(
        k_coarse=args.k_coarse,
        k_fine=args.k_fine,
        priors=tuple(c / sum(counts) for c in counts),
        spacing_mm=crops.recipe.spacing_mm,
        crop=crops.recipe.crop,
        stride=crops.recipe.stride,
    )
    t_range = choose_t_range(LesionScanner(model, sde, card, args.device), val.images, val.labels)
    card = card.replace(t_range=t_range)
    scanner = LesionScanner(model, sde, card, args.device)
    card = card.replace(
        temperature_coarse=window_temperature(scanner, val.images, val.labels, fine=False),
        temperature_fine=window_temperature(scanner, val.images, val.labels, fine=True),
    )
    open_card = card.replace(finding_threshold=0.0, max_findings=card.refine_top)
    views = score_views(LesionScanner(model, sde, open_card, args.device), val_notes)
    return fit_from_views(card, views), len(views)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.lesion_eval import evaluate_model
    from sgc_core.checkpoint import load_model, save_model
    from sgc_core.datasets.crops import read_synthetic_annotations

    family, held = make_data(args)
    crops = make_crops(family, args.workers)
    notes = read_synthetic_annotations(family)
    val_notes = [n for n in notes if n.split == "val"]
    if args.val_views:
        val_notes = val_notes[: args.val_views]
    if not args.evaluate_only:
        result, config = train_model(args, crops)
        t0 = time.perf_counter()
        lesion, n_val = calibrate(args, result.model, config.sde, crops, val_notes)
        card = {
            "name": args.out.name,
            "version": "0.2.0",
            "classes": list(lesion.classes),
            "positive_class": "malignant",
            "image_size": crops.recipe.crop,
            "channels": 1,
            "input_range": [0.0, 1.0],
            "quantization_levels": 256,
            "sde": config.sde,
            "architecture": result.architecture,
            "lesion": lesion.to_dict(),
            "training": {
                "config": {k: v for k, v in vars(config).items()},
                "steps": result.step,
                "seconds": round(result.seconds, 1),
                "final_loss": sum(result.losses[-50:]) / max(1, len(result.losses[-50:])),
                "crops": {s: int((crops.splits == s).sum()) for s in ("train", "val", "test")},
                "data": _describe(args),
                "split": {"seed": args.synth_seed, "level": "patient"},
            },
            "calibration": {
                "fitted_on": f"validation split: crops, {n_val} views",
                "seconds": round(time.perf_counter() - t0, 1),
            },
        }
        save_model(args.out, result.model, card)
    model, card = load_model(args.out, args.device)
    held_notes = read_synthetic_annotations(held)
    report = evaluate_model(args, args.out, notes, held_notes, args.out.parent / "eval-lesion")
    print(json.dumps(report["summary"], indent=2))
    del model, card
    return 0


def _describe(args) -> str:
    return (
        f"sgc synth --studies {args.studies} --seed {args.synth_seed} --size {args.size} "
        f"--difficulty {args.difficulty:g} --normal-fraction 0.25 --style mixed --hold-out ducts; "
        f"held-out: --studies {args.held_out_studies} --seed {args.synth_seed + 1} --style ducts"
    )


if __name__ == "__main__":
    raise SystemExit(main())
