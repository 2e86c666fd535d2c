"""GPU figures in one prepared run: per 4-view study and per training step.

What it measures on ``--device`` (``cuda`` where a GPU is lent; ``cpu`` runs the same code):

1. the bundled models on a synthetic 4-view study, as the worker calls them
   (``ViewModel.classify`` on DICOM views): the default lesion finder and the whole-view model;
   seconds per study and studies per hour for one device;
2. the lesion finder at native resolution: the bundled finder's network and card scaled from
   0.4 mm to 0.1 mm pixels (crop and stride x4, same K and refinement); its weights are random
   (no native-resolution finder is trained yet), which changes its findings, not its cost;
3. the paper-size network (the seed UNet at 3 x 384 x 384, random weights) scored two ways on
   the same weights: our ELBO (K = 16, both classes in one batch) and the paper's rule
   (scipy RK45 per image and class, rtol = atol = 1e-5, benchmarks/classifier.py); seconds per
   4-view study for each, and the ratio;
4. training steps per second (DSM loss, Adam, batch ``--batch``, bf16 autocast on CUDA as
   ``sgc train`` does) for the bundled, native-resolution and paper-size networks.

Goal: at least 1,000 4-view studies per hour per GPU for the node's model.

    .venv/bin/python -m benchmarks.gpu --device cuda --json gpu.json
    .venv/bin/python -m benchmarks.gpu --device cpu --tiny      # smoke run: small sizes, 1 view

Not yet run on a GPU: no device was lent to the session that wrote it (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from sgc_core.checkpoint import load_model
from sgc_core.elbo import elbo_scores
from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_scan import LesionScanner
from sgc_core.scan_geometry import scan_dataset
from sgc_core.sde import VPSDE, sde_from_dict
from sgc_core.synth.study import generate_study
from sgc_core.train import dsm_loss
from sgc_core.unet import architecture_spec, build_score_model
from sgc_core.view_model import load_view_model

ROOT = Path(__file__).resolve().parents[1]

MODELS = ROOT / "sgc_core" / "models"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one untimed warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bundled(device: str, views, repeats: int, weights: dict[str, Path]) -> dict[str, float]:
    """Seconds per 4-view study for each model, as the worker calls it (x 4 / len(views))."""
    out = {}
    for name, path in weights.items():
        model = load_view_model(path, device)
        out[name] = timed(lambda m=model: m.classify(views), device, repeats) * 4 / len(views)
    return out


def native_lesion(device: str, views, repeats: int, scale: int, weights: Path) -> float:
    """The finder scaled to ``0.4 / scale`` mm pixels: crop and stride x ``scale``."""
    model, card = load_model(weights, device)
    lesion = LesionCard.from_dict(card["lesion"])
    native = dataclasses.replace(
        lesion,
        crop=lesion.crop * scale,
        stride=lesion.stride * scale,
        spacing_mm=lesion.spacing_mm / scale,
    )
    arch = dict(card["architecture"], image_size=native.crop)
    net = build_score_model(arch, card["sde"])  # random weights: the cost, not the findings
    scanner = LesionScanner(net, sde_from_dict(card["sde"]), native, device)
    scans = [scan_dataset(ds, native.spacing_mm) for ds in views]
    return timed(lambda: [scanner.scan(s) for s in scans], device, repeats) * 4 / len(views)


def paper_size(device: str, size: int, k: int, paper_images: int) -> dict[str, float]:
    """The seed UNet at 3 x size x size: ELBO and the paper's rule, seconds per 4-view study."""
    from benchmarks.classifier import scipy_loglik

    sde = VPSDE()
    net = build_score_model(architecture_spec("seed", 2, 3, size, 32), sde).to(device).eval()
    params = sum(p.numel() for p in net.parameters())
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = x.to(device)
    gen = torch.Generator().manual_seed(0)

    def elbo():
        with torch.inference_mode():
            elbo_scores(net, sde, x, 2, k=k, generator=gen, same_noise_for_batch=True)

    elbo_s = timed(elbo, device, 2)
    v = torch.randn(x[:1].shape, generator=gen).to(device)
    t0, nfes = time.perf_counter(), []
    for i in range(paper_images):  # each image: both classes, one RK45 solve per class
        for y in range(2):
            nfes.append(scipy_loglik(net, sde, x[i : i + 1], y, v)[1])
    sync(device)
    per_image = (time.perf_counter() - t0) / paper_images
    return {
        "parameters": params,
        "elbo_seconds_per_study": elbo_s,
        "paper_rule_seconds_per_study": 4 * per_image,
        "paper_rule_nfe_per_class": statistics.mean(nfes),
        "paper_rule_images_timed": paper_images,
    }


def train_steps(device: str, arch: dict, batch: int, steps: int) -> float:
    """Optimiser steps per second on the DSM loss (bf16 autocast on CUDA, as sgc train)."""
    sde = VPSDE()
    net = build_score_model(arch, sde).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    size, channels = arch["image_size"], arch["channels"]
    x = torch.rand(batch, channels, size, size, device=device) * 2 - 1
    y = torch.randint(0, arch["num_classes"], (batch,), device=device)
    gen = torch.Generator().manual_seed(0)

    def step():
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=device != "cpu"):
            loss = dsm_loss(net, sde, x, y, gen, 1e-5, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - t0)


def run(args) -> dict:
    device = args.device
    from sgc_core.synth.config import SIZES, SynthConfig

    # Full-field phantoms (the worker's input); the smoke run takes the small default.
    rows, cols = SIZES["small" if args.tiny else "full"]
    views = generate_study(2026, SynthConfig(rows=rows, cols=cols))
    views = views[:1] if args.tiny else views  # smoke run: one view, times x 4
    figures: dict = {"device": device_name(device), "tiny": args.tiny}
    weights = {"lesion finder": args.lesion_model, "whole-view": args.view_model}
    per_study = bundled(device, views, args.repeats, weights)
    scale = 1 if args.tiny else 4
    per_study["lesion finder, native"] = native_lesion(
        device, views, args.repeats, scale, args.lesion_model
    )
    figures["per_study_seconds"] = per_study
    figures["studies_per_hour"] = {k: 3600 / v for k, v in per_study.items()}
    size = 8 if args.tiny else 384
    figures["paper_size"] = paper_size(device, size, 16, 1 if args.tiny else args.paper_images)
    train = 16 if args.tiny else 64
    archs = {
        f"bundled ({train} px, width 16)": architecture_spec("default", 3, 1, train, 16),
        f"native lesion ({train * scale} px, width 16)": architecture_spec(
            "default", 3, 1, train * scale, 16
        ),
        f"paper-size seed ({size} px)": architecture_spec("seed", 2, 3, size, 32),
    }
    batch, steps = (2, 2) if args.tiny else (args.batch, args.steps)
    figures["train_steps_per_second"] = {
        name: train_steps(device, arch, batch, steps) for name, arch in archs.items()
    }
    figures["train_batch"] = batch
    return figures


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def report(f: dict) -> None:
    print(f"device: {f['device']}{' (tiny sizes: a smoke run)' if f['tiny'] else ''}")
    print("| model | s per 4-view study | studies/hour |")
    print("|---|---|---|")
    for name, sec in f["per_study_seconds"].items():
        print(f"| {name} | {sec:.3f} | {f['studies_per_hour'][name]:.0f} |")
    p = f["paper_size"]
    ratio = p["paper_rule_seconds_per_study"] / p["elbo_seconds_per_study"]
    print(
        f"paper-size net ({p['parameters'] / 1e6:.1f} M parameters): ELBO K=16 "
        f"{p['elbo_seconds_per_study']:.3f} s/study, paper's rule (RK45 per class) "
        f"{p['paper_rule_seconds_per_study']:.1f} s/study "
        f"({p['paper_rule_nfe_per_class']:.0f} NFE per class), ratio {ratio:.0f}x"
    )
    print(f"training steps/s (batch {f['train_batch']}):")
    for name, rate in f["train_steps_per_second"].items():
        print(f"  {name}: {rate:.2f}")
    goal = f["studies_per_hour"]["lesion finder"]
    print(f"goal >= 1000 studies/h for the node's model: {goal:.0f} ({'met' if goal >= 1000 else 'not met'})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="small sizes: a CPU smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per study figure")
    parser.add_argument("--paper-images", type=int, default=2, help="images under RK45")
    parser.add_argument("--batch", type=int, default=32, help="training batch")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--lesion-model", type=Path, default=MODELS / "sgc-lesion-mammo.safetensors"
    )
    parser.add_argument("--view-model", type=Path, default=MODELS / "sgc-demo-mammo.safetensors")
    args = parser.parse_args()
    figures = run(args)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
