"""Lesion quality on crops: the score-based classifier (SGC) vs a discriminative CNN, as the
training crops grow, and on a phantom style that training never saw.

    sgc synth --studies 400 --size small --style mixed --hold-out none --workers 2 \\
        --out .cache/lesion_quality/synth
    python -m benchmarks.lesion_quality --data .cache/lesion_quality/synth \\
        --crops .cache/lesion_quality/crops.npz --workers 2 --threads 1 \\
        --out benchmarks/results/lesion_quality.json

Cost at the defaults (estimated from per-step costs measured here, not yet a recorded run):
about 2 CPU-hours, almost all of it the SGC (0.7 CPU-s per training step, 0.4 per scored
crop at K = 8) against the CNN's 0.06 per step. Where a GPU is lent, add ``--device cuda``.

The finder's data-efficiency question on crops (``model_quality.py`` is the whole-view version). Data: 64 px tissue
crops at 0.4 mm/px labelled normal/benign/malignant (:mod:`sgc_core.datasets.crops`) from
``--crops`` (a ``CropSet.save`` file) or cut from the ``--data`` synth folder (then saved to
``--crops``). The folder must hold the held-out style: ``sgc synth --hold-out none``.

One training per N serves both questions: the held-out style (``--held-out``) is in no training
or validation set, so the full-N models are the shift run's models. Data efficiency is measured
on the base styles' test crops; shift compares them with the held-out style's test crops.

Per N: the first N crops of a seeded class-stratified permutation of the training split (nested,
``model_quality.nested_order``); both models class-balanced with one budget, ``--steps`` x
``--batch``. The SGC's class scores are the denoising scores under one shared plan of ``--k``
(t, eps) with t in ``--t-range`` (:mod:`sgc_core.denoise_map`, as the finder scores a window);
the CNN's are its logits. Each becomes P(class) by a temperature fitted on validation crops
(uniform priors); nothing is chosen on test. Reported on test: AUC malignant vs rest, lesion vs
normal, malignant vs benign (lesion crops), accuracy (argmax); SGC/CNN ratio and difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.lesion_report import crop_metrics, print_row, print_summary, ratios, shift_summary
from benchmarks.model_quality import nested_order
from sgc_core.baseline import BaselineConfig, predict_logits, train_baseline
from sgc_core.batching import DEFAULT_MEMORY_MB, forward_rows
from sgc_core.calibration import fit_temperature, log_posterior
from sgc_core.datasets.base import TensorDataset
from sgc_core.datasets.crops import (
    CROP_CLASSES,
    CropDataError,
    CropRecipe,
    CropSet,
    build_crops,
    read_synthetic_annotations,
)
from sgc_core.denoise_map import class_errors, noise_plan, window_scores
from sgc_core.scaling import to_model_space
from sgc_core.sde import sde_from_dict
from sgc_core.synth.styles import HELD_OUT_STYLE
from sgc_core.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

UNIFORM = [1.0 / len(CROP_CLASSES)] * len(CROP_CLASSES)


class BenchmarkError(ValueError):
    """Settings or data this benchmark cannot run on; the message says what to change."""


# -- data -------------------------------------------------------------------------------------


def load_crops(crops: Path | None, data: Path | None, seed: int, workers: int) -> CropSet:
    """The crop set: ``crops`` if that file exists, else cut from the ``data`` synth folder
    (and saved to ``crops`` when given, so the next run skips the cutting)."""
    if crops is not None and crops.is_file():
        return CropSet.load(crops)
    if data is None:
        where = f"{crops} does not exist and " if crops is not None else ""
        raise BenchmarkError(f"{where}no --data folder to cut crops from: pass --crops or --data")
    cut = build_crops(read_synthetic_annotations(data), CropRecipe(seed=seed), workers)
    if crops is not None:
        crops.parent.mkdir(parents=True, exist_ok=True)
        cut.save(crops)
    return cut


def part(crops: CropSet, keep: np.ndarray) -> CropSet:
    """The crops where ``keep`` is true, with their splits and styles (so a test can check
    what a training set is made of, which a TensorDataset no longer says)."""
    return CropSet(
        crops.images[keep], crops.labels[keep], crops.splits[keep], crops.styles[keep], crops.recipe
    )


def benchmark_parts(crops: CropSet, held_out: str | None) -> dict[str, CropSet]:
    """train / val / test of the base styles (every style but ``held_out``) and, with a
    held-out style, ``test_held``: its test crops. The held-out style is in no other part."""
    base = crops.styles != held_out if held_out is not None else np.ones(len(crops.labels), bool)
    parts = {s: part(crops, base & (crops.splits == s)) for s in ("train", "val", "test")}
    if held_out is not None:
        parts["test_held"] = part(crops, ~base & (crops.splits == "test"))
    for name, p in parts.items():
        if len(p.labels) == 0:
            present = sorted(set(crops.styles.tolist()))
            hint = (
                f"; the crop set's styles are {present}: write the synth set with "
                "`--hold-out none` or pass --held-out none"
                if name == "test_held"
                else ""
            )
            raise BenchmarkError(f"no {name} crops (held-out style {held_out!r}){hint}")
    return parts


def training_sizes(spec: str, n_train: int) -> list[int]:
    """``--ns`` ("100,300,full") -> sizes capped at the training split, each once, in order."""
    out: list[int] = []
    for item in spec.split(","):
        item = item.strip()
        if item == "full":
            n = n_train
        else:
            try:
                n = int(item)
            except ValueError:
                raise BenchmarkError(f"--ns: {item!r} is neither an integer nor 'full'") from None
            if n < 2:
                raise BenchmarkError(f"--ns: a training set needs at least 2 crops, got {n}")
        n = min(n, n_train)
        if n not in out:
            out.append(n)
    return out


def first_n(data: TensorDataset, order: list[int], n: int) -> TensorDataset:
    idx = order[:n]
    return TensorDataset(data.images[idx], [data.labels[i] for i in idx], list(CROP_CLASSES))


# -- models -----------------------------------------------------------------------------------


def train_sgc(data: TensorDataset, args) -> tuple:
    """The class-conditional score network; its scorer is the finder's window score."""
    weights = getattr(args, "sgc_weights", None)  # lesion_field's options have none
    if weights is not None:
        model, sde, info = saved_sgc(weights, data, args.device)
    else:
        cfg = TrainConfig(
            image_size=data.images.shape[-1],
            width=args.width,
            steps=args.steps,
            batch_size=args.batch,
            lr=args.sgc_lr,
            seed=args.seed,
            balanced=True,
            checkpoint_every=10**9,
            device=args.device,
        )
        res = train(cfg, data, progress=False)
        model, sde = res.model, sde_from_dict(cfg.sde)
        info = {"steps": res.step, "batch": cfg.batch_size, "width": cfg.width}
    plan = noise_plan(args.k, tuple(data.images.shape[1:]), args.t_range, args.seed)
    # Rows per forward call from the node's memory budget: a 128-px crop's activations
    # are 4 times a 64-px one's, and 256 rows of them would take gigabytes.
    rows = forward_rows(info["width"], data.images.shape[-1], DEFAULT_MEMORY_MB, 256)

    def score(images: torch.Tensor) -> torch.Tensor:
        x = to_model_space(images, 256, dequantize=False).to(args.device)
        return torch.cat(
            [
                window_scores(class_errors(model, sde, x[s : s + 128], len(UNIFORM), plan, rows))
                for s in range(0, len(x), 128)
            ]
        ).cpu()

    return score, info


def saved_sgc(path: Path, data: TensorDataset, device: str) -> tuple:
    """A finder already trained on these crops (``--sgc-weights``): the same network,
    scored here like a freshly trained one; its budget is read from its card.

    Why: the SGC costs ~0.5 CPU-s per step, so the full-N model of a large draw is trained
    once, by train_lesion_model, and not again for this table."""
    from sgc_core.checkpoint import load_model

    model, card = load_model(path)
    if card.get("image_size") != data.images.shape[-1]:
        raise BenchmarkError(f"{path}: a {card.get('image_size')}-px model, crops are not")
    model = model.to(torch.device(device)).eval().requires_grad_(False)
    cfg = card["training"]["config"]
    info = {"steps": card["training"]["steps"], "batch": cfg["batch_size"], "width": cfg["width"]}
    return (
        model,
        sde_from_dict(card["sde"]),
        {**info, "weights": f"{card['name']} {card['version']}"},
    )


def train_cnn(data: TensorDataset, args) -> tuple:
    """The discriminative peer (``sgc_core.baseline``); its scores are its logits."""
    cfg = BaselineConfig(
        image_size=data.images.shape[-1],
        width=args.cnn_width or args.width,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.cnn_lr,
        seed=args.seed,
        balanced=True,
        device=args.device,
    )
    res = train_baseline(cfg, data)

    def score(images: torch.Tensor) -> torch.Tensor:
        return predict_logits(res.model, images, device=args.device).double()

    return score, {"steps": len(res.losses), "batch": cfg.batch_size, "width": cfg.width}


TRAINERS = {"sgc": train_sgc, "cnn": train_cnn}


# -- metrics ----------------------------------------------------------------------------------


def evaluate(score, data: TensorDataset, temperature: float) -> dict:
    logp = log_posterior(score(data.images), temperature, UNIFORM).numpy()
    return crop_metrics(logp, np.asarray(data.labels))


def run_model(name: str, train_set: TensorDataset, val, tests: dict, args) -> dict:
    """Train ``name`` on ``train_set``, fit its temperature on ``val``, score every test set."""
    t0 = time.perf_counter()
    score, info = TRAINERS[name](train_set, args)
    t1 = time.perf_counter()
    temperature = fit_temperature(score(val.images), torch.tensor(val.labels), UNIFORM)
    out = {"model": name, **info, "budget_images": info["steps"] * info["batch"]}
    out["temperature"] = temperature
    for key, data in tests.items():
        out[key] = evaluate(score, data, temperature)
    out["seconds_train"] = round(t1 - t0, 1)
    out["seconds_score"] = round(time.perf_counter() - t1, 1)
    return out


def validation_set(val: CropSet, limit: int, seed: int) -> TensorDataset:
    """At most ``limit`` validation crops, a seeded class-stratified choice (the temperature
    needs a few hundred, and every one costs the SGC 3 K network passes)."""
    data = val.dataset()
    return first_n(data, nested_order(data.labels, seed + 1), min(limit, len(data)))


# -- main -------------------------------------------------------------------------------------


def t_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'T_MIN,T_MAX', got {text!r}") from None
    if not 0.0 < lo < hi <= 1.0:
        raise argparse.ArgumentTypeError(f"need 0 < T_MIN < T_MAX <= 1, got {text!r}")
    return lo, hi


def models(text: str) -> tuple[str, ...]:
    """``--models`` ("sgc,cnn") -> the model names in the benchmark's order, each once."""
    names = {m.strip() for m in text.split(",") if m.strip()}
    unknown = sorted(names - set(TRAINERS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"models must be among {sorted(TRAINERS)}, got {text!r}")
    return tuple(m for m in TRAINERS if m in names)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--crops", type=Path, default=None, help="crop set (.npz of CropSet.save)")
    p.add_argument("--data", type=Path, default=None, help="`sgc synth` folder to cut crops from")
    p.add_argument("--ns", default="100,300,1000,full", help="training-set sizes")
    p.add_argument("--models", type=models, default=("sgc", "cnn"), help="sgc, cnn or both")
    p.add_argument("--steps", type=int, default=1500, help="optimiser steps per model and N")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=16, help="base width of both networks")
    p.add_argument("--cnn-width", type=int, default=None, help="the CNN's, if not --width")
    p.add_argument("--sgc-lr", type=float, default=5e-4)
    p.add_argument(
        "--sgc-weights",
        type=Path,
        default=None,
        help="score this finder (trained on these crops' training split) instead of training "
        "an SGC; one N only, its card gives the budget",
    )
    p.add_argument("--cnn-lr", type=float, default=2e-3)
    p.add_argument("--k", type=int, default=8, help="shared (t, eps) pairs per crop")
    p.add_argument("--t-range", type=t_range, default=(0.02, 0.5), help="T_MIN,T_MAX")
    p.add_argument("--val-max", type=int, default=600, help="validation crops for temperatures")
    p.add_argument("--held-out", default=HELD_OUT_STYLE, help="kept out of training; 'none'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is lent")
    p.add_argument("--workers", type=int, default=1, help="processes cutting crops (--data)")
    p.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    args = p.parse_args(argv)
    for name in ("steps", "batch", "width", "k", "val_max", "threads", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.device.startswith("cpu") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device on this machine")
    args.held_out = None if args.held_out.lower() == "none" else args.held_out
    if args.sgc_weights is not None and ("," in args.ns or "sgc" not in args.models):
        p.error("--sgc-weights scores one trained SGC: give one --ns (its training size) and sgc")
    if args.sgc_weights is not None and not args.sgc_weights.with_suffix(".json").is_file():
        p.error(f"--sgc-weights {args.sgc_weights}: no model card {args.sgc_weights}.json")
    return args


def run(args) -> dict:
    """The whole benchmark; returns the report (also written to ``--out`` after every N)."""
    t0 = time.perf_counter()
    crops = load_crops(args.crops, args.data, args.seed, args.workers)
    parts = benchmark_parts(crops, args.held_out)
    train_all = parts["train"].dataset()
    val = validation_set(parts["val"], args.val_max, args.seed)
    ns = training_sizes(args.ns, len(train_all))
    order = nested_order(train_all.labels, args.seed)
    counts = {k: np.bincount(p.labels, minlength=3).tolist() for k, p in parts.items()}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report: dict = {"settings": settings, "class_counts": counts, "results": []}
    print(f"crops per part (normal, benign, malignant): {counts}; val used {len(val)}", flush=True)
    budget = f"{args.steps} steps x {args.batch} crops"
    if args.sgc_weights is not None:  # the saved SGC's own budget is in its row
        budget += f"; the SGC: {args.sgc_weights}, its card's budget"
    print(f"budget per model and N: {budget}", flush=True)
    print(
        f"{'N':>6} {'model':>5} {'AUC mal':>8} {'AUC les':>8} {'AUC m/b':>8} {'acc':>8} "
        f"{'train s':>8} {'score s':>8}",
        flush=True,
    )
    for n in ns:
        tests = {"test": parts["test"].dataset()}
        if args.held_out is not None and n == max(ns):
            tests["test_held"] = parts["test_held"].dataset()
        for name in args.models:
            r = {"n": n, **run_model(name, first_n(train_all, order, n), val, tests, args)}
            report["results"].append(r)
            print_row(r)
        report["ratios"] = ratios(report["results"])
        if args.held_out is not None and n == max(ns):
            report["shift"] = shift_summary(report["results"], args.held_out)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        write(report, args.out)
    print_summary(report)
    print(f"total {report['seconds']:.0f} s", flush=True)
    return report


def write(report: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        run(args)
    except (BenchmarkError, CropDataError) as exc:
        print(f"lesion_quality: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
