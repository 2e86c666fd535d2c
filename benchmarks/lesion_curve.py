"""Validation learning curve of a lesion finder's network while it trains.

    python -m benchmarks.lesion_curve --state MODEL.train/train_state.pt \\
        --crops data/lesion-synth/family/crops.npz --every 250 --until 4000

Why: the finder's whole-view score was at chance on fresh draws, and the question that
decides what to do next is whether its network is still learning (more compute helps) or
has stopped (the recipe must change). This answers it on validation crops only, never the
test split: each time the training run writes its resume state (every ``checkpoint_every``
steps) the EMA weights are scored on a fixed, seeded subset of the validation crops with the
class-conditional denoising score (K shared (t, eps), as the finder's fine pass), and the
AUCs of malignant vs rest, lesion vs normal and malignant vs benign are printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.lesion_report import BENIGN, MALIGNANT, NORMAL, auc


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--state", type=Path, required=True, help="a training run's train_state.pt")
    p.add_argument("--crops", type=Path, required=True, help="the run's crops.npz")
    p.add_argument("--init", type=Path, default=None, help="also score this saved model first")
    p.add_argument("--n", type=int, default=240, help="validation crops scored (seeded subset)")
    p.add_argument("--k", type=int, default=4, help="shared (t, eps) pairs per crop")
    p.add_argument("--t-range", default="0.02,0.5")
    p.add_argument(
        "--every",
        type=int,
        default=250,
        help="score each checkpoint step that is a multiple of this",
    )
    p.add_argument("--until", type=int, default=4000, help="stop after scoring this step")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def val_subset(crops_path: Path, n: int):
    """A seeded subset of the validation crops: images (B, 1, H, W) in [0, 1] and labels."""
    from sgc_core.datasets.crops import CropSet

    val = CropSet.load(crops_path).dataset("val")
    keep = torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:n]
    return val.images[keep], np.array([val.labels[int(i)] for i in keep])


def score(model, sde, images: torch.Tensor, k: int, t_range) -> np.ndarray:
    """(B, Y) class-conditional denoising scores under one seeded plan."""
    from sgc_core.denoise_map import class_errors, noise_plan, window_scores
    from sgc_core.scaling import to_model_space

    plan = noise_plan(k, tuple(images.shape[1:]), t_range, seed=0)
    x = to_model_space(images, 256, dequantize=False)
    parts = [
        window_scores(class_errors(model, sde, x[s : s + 64], 3, plan))
        for s in range(0, len(x), 64)
    ]
    return torch.cat(parts).numpy()


def aucs(scores: np.ndarray, labels: np.ndarray) -> dict:
    """AUCs from uniform-prior log-odds of the scores (crop classes, sgc_core.datasets.crops)."""
    n, b, m = scores[:, NORMAL], scores[:, BENIGN], scores[:, MALIGNANT]
    les = labels != NORMAL
    return {
        "malignant_vs_rest": auc(labels == MALIGNANT, m - np.logaddexp(n, b)),
        "lesion_vs_normal": auc(les, np.logaddexp(b, m) - n),
        "malignant_vs_benign": auc(labels[les] == MALIGNANT, (m - b)[les]),
    }


def report(tag: str, model, sde, images, labels, args, t_range) -> None:
    t0 = time.perf_counter()
    a = aucs(score(model.eval(), sde, images, args.k, t_range), labels)
    line = "  ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in a.items())
    print(f"{tag:>12}  {line}  ({time.perf_counter() - t0:.0f} s)", flush=True)


def ema_at(state_path: Path, last: int):
    """(step, EMA model) once the state holds a step past ``last`` that is due, else None."""
    from sgc_core.sde import sde_from_dict
    from sgc_core.train_config import TrainConfig
    from sgc_core.unet import architecture_spec, build_score_model

    if not state_path.is_file():
        return None
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    if int(state["step"]) <= last:
        return None
    cfg = TrainConfig(**{**state["config"], "steps": 1})
    sde = sde_from_dict(cfg.sde)
    arch = architecture_spec(cfg.arch, 3, cfg.channels, cfg.image_size, cfg.width)
    model = build_score_model(arch, sde)
    model.load_state_dict(state["ema"])
    return int(state["step"]), model, sde


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_range = tuple(float(v) for v in args.t_range.split(","))
    images, labels = val_subset(args.crops, args.n)
    names = {NORMAL: "normal", BENIGN: "benign", MALIGNANT: "malignant"}
    counts = {name: int((labels == i).sum()) for i, name in names.items()}
    print(f"# {len(labels)} validation crops {counts}, K {args.k}, t {t_range}", flush=True)
    if args.init is not None:
        from sgc_core.checkpoint import load_model
        from sgc_core.sde import sde_from_dict

        model, card = load_model(args.init)
        report("init", model, sde_from_dict(card["sde"]), images, labels, args, t_range)
    last = -1
    while last < args.until:
        got = ema_at(args.state, last)
        if got is None:
            time.sleep(20)
            continue
        step, model, sde = got
        last = step
        if step % args.every == 0:
            report(f"step {step}", model, sde, images, labels, args, t_range)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
