"""Model quality: the score-based classifier (SGC) vs a discriminative CNN, as training data grow.

    python -m benchmarks.model_quality --threads 1    # default: 103 min measured here (1 of 2 shared cores)
    python -m benchmarks.model_quality --ns 100,300,1000,full --steps 4000 --image-size 128

The fixed synthetic benchmark: ``--studies`` patients written by ``sgc_core.synth`` (seeded;
4 images each, one lesion per breast, the per-breast label benign/malignant), split by patient
70/15/15 into train/val/test. Every image goes through ``sgc_core.preprocess`` exactly as at
serving time. For every N in ``--ns`` the first N images of a seeded, class-stratified
permutation of the training split are used (so the sets are nested) and both models get the
same budget, optimiser steps x batch size (``--steps`` x ``--batch-size``; wall-clock differs
and is printed). Each model is calibrated on the validation split (temperature by NLL, the
operating point = the threshold on P(malignant) giving ``--target-sensitivity`` on val); the
test split is only scored, never used for a choice. Printed per N and model: test AUC,
balanced accuracy, sensitivity and specificity at the operating point, ECE, seconds.

Difficulty: ``--difficulty`` sets the generator's knob; the default was chosen on the
VALIDATION split (``--tune``: CNN on the full training set, val AUC per difficulty) so that
the CNN does not saturate (docs/benchmarks.md, "Model quality").
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from sgc_core.baseline import BaselineConfig, predict_logits, train_baseline
from sgc_core.calibration import fit_temperature, threshold_for_sensitivity
from sgc_core.calibration_fit import calibrate_card
from sgc_core.datasets.base import Subset, TensorDataset
from sgc_core.evaluation import compute_metrics, score_dataset
from sgc_core.inference import Classifier
from sgc_core.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

CLASSES = ["benign", "malignant"]
DEFAULT_CACHE = ROOT / ".cache" / "model_quality"


# -- data -------------------------------------------------------------------------------------


def synth_dir(cache: Path, studies: int, seed: int, difficulty: float, mix: dict) -> Path:
    tag = "-".join(f"{k.split('_')[0]}{v:g}" for k, v in sorted(mix.items()))
    return cache / f"synth-n{studies}-s{seed}-d{difficulty:g}-{tag}"


def build_tensors(
    cache: Path,
    studies: int,
    seed: int,
    difficulty: float,
    mix: dict,
    image_size: int,
    workers: int = 1,
) -> dict[str, TensorDataset]:
    """Write the synthetic DICOM set once, preprocess it once per image size, cache both.

    ``mix``: ``mass_fraction``, ``normal_fraction`` and ``malignant_fraction`` of the generator.
    Returns {"train", "val", "test"} in-memory data sets of [0, 1] tensors."""
    from sgc_core.datasets.mammo import load_synthetic
    from sgc_core.preprocess import PreprocessConfig
    from sgc_core.synth import write_dataset

    root = synth_dir(cache, studies, seed, difficulty, mix)
    if not (root / "labels.csv").is_file():
        write_dataset(
            root,
            studies,
            seed=seed,
            size="small",
            difficulty=difficulty,
            workers=workers,
            **mix,
        )
    tensors = root / f"tensors-{image_size}.pt"
    if not tensors.is_file():
        config = PreprocessConfig(image_size=image_size, scaling="[0,1]")
        ds = load_synthetic(root, config)
        out = {}
        for split in ("train", "val", "test"):
            part = ds.subset(split)
            images = torch.stack([part[i][0] for i in range(len(part))])
            out[split] = {"images": images, "labels": part.labels}
        out["preprocess"] = config.to_dict()
        torch.save(out, tensors)
    data = torch.load(tensors, weights_only=False)
    return {
        s: TensorDataset(data[s]["images"], data[s]["labels"], CLASSES)
        for s in ("train", "val", "test")
    }


def nested_order(labels: list[int], seed: int) -> list[int]:
    """A seeded permutation interleaving the classes in proportion, so every prefix of it is
    (close to) stratified and the N = 100 set is inside the N = 300 set, and so on."""
    gen = torch.Generator().manual_seed(seed)
    per_class = []
    for c in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == c]
        per_class.append([idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()])
    n = len(labels)
    keyed = []
    for members in per_class:
        for rank, i in enumerate(members):
            keyed.append(((rank + 0.5) / len(members), i))
    order = [i for _, i in sorted(keyed)]
    assert len(order) == n
    return order


# -- metrics ----------------------------------------------------------------------------------


def test_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float, seconds: float) -> dict:
    predicted = (probs[:, 1] >= threshold).astype(int)
    m = compute_metrics(probs, labels, predicted, CLASSES, "malignant")
    return {
        "auc": m["auc"],
        "balanced_accuracy": m["balanced_accuracy"],
        "sensitivity": m["sensitivity"],
        "specificity": m["specificity"],
        "ece": m["ece"],
        "threshold": threshold,
        "seconds": round(seconds, 1),
    }


def shared_budget(args) -> dict:
    """What both models train with, equal by construction (the comparison is only fair on an
    equal budget): image size, steps x batch size, seed and class-balanced sampling."""
    return {
        "image_size": args.image_size,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "balanced": True,
    }


def cnn_config(args) -> BaselineConfig:
    """The CNN's training run: :func:`shared_budget` with the CNN's own width and rate."""
    return BaselineConfig(**shared_budget(args), width=args.cnn_width, lr=args.cnn_lr)


def sgc_config(args) -> TrainConfig:
    """The SGC's training run: :func:`shared_budget` with the SGC's own width and rate."""
    return TrainConfig(
        **shared_budget(args), width=args.sgc_width, lr=args.sgc_lr, checkpoint_every=10**9
    )


def run_cnn(train_set, val, test, args) -> dict:
    cfg = cnn_config(args)
    t0 = time.perf_counter()
    res = train_baseline(cfg, train_set)
    val_logits = predict_logits(res.model, val.images)
    val_labels = torch.tensor(val.labels)
    temperature = fit_temperature(val_logits, val_labels, [0.5, 0.5])
    val_p = torch.softmax(val_logits.double() / temperature, 1).numpy()
    thr = threshold_for_sensitivity(val_p[:, 1], val_labels.numpy() == 1, args.target_sensitivity)
    val_auc = compute_metrics(val_p, val_labels.numpy(), val_p.argmax(1), CLASSES, "malignant")[
        "auc"
    ]
    test_p = torch.softmax(predict_logits(res.model, test.images).double() / temperature, 1)
    out = test_metrics(test_p.numpy(), np.array(test.labels), thr, time.perf_counter() - t0)
    out["val_auc"] = val_auc
    return out


def sgc_card(args, arch: dict, counts: list[int]) -> dict:
    return {
        "name": "benchmark-sgc",
        "version": "0",
        "classes": CLASSES,
        "positive_class": "malignant",
        "image_size": args.image_size,
        "channels": 1,
        "input_range": [0.0, 1.0],
        "quantization_levels": 256,
        "sde": {"kind": "vp", "beta_min": 0.1, "beta_max": 20.0},
        "architecture": arch,
        "estimator": {"k": args.k, "weighting": args.weighting, "eps": args.t_min},
        "calibration": {"temperature": 1.0, "priors": [c / sum(counts) for c in counts]},
    }


def run_sgc(train_set, val, test, args) -> dict:
    cfg = sgc_config(args)
    t0 = time.perf_counter()
    res = train(cfg, train_set, progress=False)
    counts = [train_set.labels.count(c) for c in range(2)]
    card = sgc_card(args, res.architecture, counts)
    card = calibrate_card(res.model, card, val, "cpu", args.target_sensitivity)
    clf = Classifier(res.model, card)
    scored = score_dataset(clf, test, batch_size=32)
    probs = clf.posterior(scored["scores"]).numpy()
    out = test_metrics(
        probs,
        scored["labels"].numpy(),
        card["operating_point"]["threshold"],
        time.perf_counter() - t0,
    )
    out["val_auc"] = card["metrics"]["validation"]["auc"]
    out["label_gap"] = label_gap(res.model, val, cfg)
    return out


@torch.no_grad()
def label_gap(model, data: TensorDataset, cfg: TrainConfig, n: int = 128) -> float:
    """Denoising loss with the wrong label minus with the true label (per pixel, x1000): a
    cheap check of whether the network uses the label at all (0 = it ignores it)."""
    from sgc_core.sde import sde_from_dict
    from sgc_core.train import dsm_loss

    sde = sde_from_dict(cfg.sde)
    gen = torch.Generator().manual_seed(1)
    x = 2.0 * data.images[:n] - 1.0
    y = torch.tensor(data.labels[:n])
    true = dsm_loss(model, sde, x, y, gen, cfg.eps, None)
    gen = torch.Generator().manual_seed(1)
    wrong = dsm_loss(model, sde, x, 1 - y, gen, cfg.eps, None)
    return float(1000 * (wrong - true))


# -- main -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--studies", type=int, default=600, help="patients (4 images each)")
    p.add_argument("--difficulty", type=float, default=0.0)
    p.add_argument("--mass-fraction", type=float, default=1.0)
    p.add_argument("--normal-fraction", type=float, default=0.7)
    p.add_argument("--malignant-fraction", type=float, default=0.7)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--ns", default="100,300,1000,full", help="training-set sizes")
    p.add_argument("--steps", type=int, default=800, help="optimiser steps per model and N")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--cnn-width", type=int, default=32)
    p.add_argument("--cnn-lr", type=float, default=2e-3)
    p.add_argument("--sgc-width", type=int, default=16)
    p.add_argument("--sgc-lr", type=float, default=5e-4)
    p.add_argument("--k", type=int, default=8, help="ELBO (t, eps) pairs per image")
    p.add_argument("--weighting", default="uniform", choices=["uniform", "likelihood"])
    p.add_argument("--t-min", type=float, default=1e-5, help="smallest ELBO time")
    p.add_argument("--target-sensitivity", type=float, default=0.9)
    p.add_argument("--models", default="cnn,sgc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="processes writing the synthetic set")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument(
        "--tune",
        default=None,
        help="comma-separated difficulties: CNN on the full train split, VALIDATION AUC only",
    )
    return p.parse_args(argv)


def mix(args) -> dict:
    return {
        "mass_fraction": args.mass_fraction,
        "normal_fraction": args.normal_fraction,
        "malignant_fraction": args.malignant_fraction,
    }


def tune(args) -> None:
    """Pick the difficulty on validation: the CNN's val AUC on the full training split."""
    for d in (float(v) for v in args.tune.split(",")):
        data = build_tensors(
            args.cache,
            args.studies,
            args.seed,
            d,
            mix(args),
            args.image_size,
            args.workers,
        )
        r = run_cnn(data["train"], data["val"], data["val"], args)
        print(f"difficulty {d:g}: CNN val AUC {r['val_auc']:.3f} ({r['seconds']} s)", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.tune:
        tune(args)
        return 0
    t0 = time.perf_counter()
    data = build_tensors(
        args.cache,
        args.studies,
        args.seed,
        args.difficulty,
        mix(args),
        args.image_size,
        args.workers,
    )
    tr, val, test = data["train"], data["val"], data["test"]
    print(
        f"data: {len(tr)} train / {len(val)} val / {len(test)} test images, "
        f"{args.image_size} px, difficulty {args.difficulty:g}, "
        f"malignant fraction train {np.mean(tr.labels):.2f} "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    order = nested_order(tr.labels, args.seed)
    ns = [len(tr) if v == "full" else min(int(v), len(tr)) for v in args.ns.split(",")]
    models = args.models.split(",")
    runners = {"cnn": run_cnn, "sgc": run_sgc}
    results = []
    header = f"{'N':>5} {'model':>5} {'AUC':>6} {'bal.acc':>7} {'sens':>6} {'spec':>6} {'ECE':>6} {'val AUC':>7} {'s':>6}"
    print(
        f"budget per model and N: {args.steps} steps x {args.batch_size} images; "
        f"operating point: sensitivity {args.target_sensitivity:g} on val",
        flush=True,
    )
    print(header, flush=True)
    for n in ns:
        subset = Subset(tr, order[:n])
        subset_t = TensorDataset(tr.images[order[:n]], subset.labels, CLASSES)
        for name in models:
            r = runners[name](subset_t, val, test, args)
            r.update({"n": n, "model": name})
            results.append(r)
            extra = f" label gap {r['label_gap']:.3f}" if "label_gap" in r else ""
            print(
                f"{n:>5} {name:>5} {fmt(r['auc'])} {fmt(r['balanced_accuracy'], 7)} "
                f"{fmt(r['sensitivity'])} {fmt(r['specificity'])} {fmt(r['ece'])} "
                f"{fmt(r['val_auc'], 7)} {r['seconds']:>6.0f}{extra}",
                flush=True,
            )
    print_ratios(results)
    print(f"total {time.perf_counter() - t0:.0f} s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    return 0


def print_ratios(results: list[dict]) -> None:
    """Per N, the SGC against its peer from this same run: test AUC ratio and difference."""
    by = {(r["n"], r["model"]): r for r in results}
    for n in sorted({r["n"] for r in results}):
        sgc, cnn = by.get((n, "sgc")), by.get((n, "cnn"))
        if sgc is None or cnn is None or not sgc["auc"] or not cnn["auc"]:
            continue
        print(
            f"N {n:>5}: SGC / CNN test AUC ratio {sgc['auc'] / cnn['auc']:.3f} "
            f"(difference {sgc['auc'] - cnn['auc']:+.3f})",
            flush=True,
        )


def fmt(v, width: int = 6) -> str:
    return (
        f"{'n/a':>{width}}"
        if v is None or (isinstance(v, float) and math.isnan(v))
        else f"{v:>{width}.3f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
