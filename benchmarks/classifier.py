"""Benchmark: the paper's likelihood rule vs our batched ODE vs the shared-noise ELBO.

On one trained model and the same held-out images, side by side in one run:
  (a) the paper's rule done the paper's way: per image and class, scipy RK45 (rtol = atol =
      1e-5) on the probability-flow ODE, one Gaussian Hutchinson probe, numpy round trip per step;
  (b) our torch-native Dormand-Prince at the same tolerance, all images x classes in one solve;
  (c) the ELBO with K = 8, 16, 32, 64 shared (t, eps) pairs, both weightings.
Prints per method: NFE, seconds per image, AUC, accuracy, agreement with (a), speed ratio to (a).

Default (CPU, a few minutes): sklearn's 8x8 digits "3" vs "8" upsampled to 16x16, the default
network at width 16, trained here. ``--paper`` uses 384x384, 3 channels and the paper's seed
network (GPU only; the data are the same digits upsampled, so the numbers are about cost).

    python -m benchmarks.classifier                 # CPU, small
    python -m benchmarks.classifier --device cuda --paper --steps 200 --n-test 8
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from torch.nn import functional as F


def digits(image_size: int, channels: int, a: int, b: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    m = (d.target == a) | (d.target == b)
    x = torch.tensor(d.images[m], dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=image_size, mode="bilinear", align_corners=False).clamp(0, 1)
    x = (x * 255).round() / 255  # 8-bit images, as stored
    return x.repeat(1, channels, 1, 1), torch.tensor((d.target[m] == b).astype(int))


def scipy_loglik(model, sde, x: torch.Tensor, y: int, v: torch.Tensor) -> tuple[float, int]:
    """One image, one class: RK45 (rtol = atol = 1e-5) on the numpy state, probe ``v``."""
    from scipy.integrate import solve_ivp

    from sgc_core.sde import prior_logp

    shape, d, device = x.shape, x.numel(), x.device
    label = torch.tensor([y], device=device)
    count = [0]

    def f(t: float, state: np.ndarray) -> np.ndarray:
        count[0] += 1
        xx = torch.from_numpy(state[:d]).float().reshape(shape).to(device).requires_grad_(True)
        tt = torch.full((1,), float(t), device=device)
        with torch.enable_grad():
            drift = sde.drift_coeff(tt) * xx - 0.5 * sde.g2(tt) * model(xx, tt, label)
            (vjp,) = torch.autograd.grad(drift, xx, v)
        div = (vjp * v).sum()
        return np.concatenate([drift.detach().cpu().numpy().reshape(-1), [div.item()]])

    y0 = np.concatenate([x.cpu().numpy().reshape(-1), [0.0]])
    sol = solve_ivp(f, (1e-5, 1.0), y0, rtol=1e-5, atol=1e-5, method="RK45")
    z = torch.from_numpy(sol.y[:d, -1]).float().reshape(shape)
    return float(prior_logp(sde, z)) + float(sol.y[d, -1]), count[0]


def paper_rule(
    model, sde, x01: torch.Tensor, num_classes: int, levels: int, seed: int, device: str
):
    """Per image, per class: scipy RK45 on the flattened numpy state, one Gaussian probe."""
    out = np.zeros((x01.shape[0], num_classes))
    nfes = []
    g = torch.Generator().manual_seed(seed)
    for i in range(x01.shape[0]):
        u = torch.rand((1, *x01.shape[1:]), generator=g)
        k = torch.clamp(torch.round(x01[i : i + 1] * (levels - 1)), 0, levels - 1)
        x = (2.0 * (k + u) / levels - 1.0).to(device)
        for y in range(num_classes):
            v = torch.randn(x.shape, generator=g).to(device)
            out[i, y], nfe = scipy_loglik(model, sde, x, y, v)
            nfes.append(nfe)
    return torch.tensor(out), float(np.mean(nfes))


def metrics(scores: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, np.ndarray]:
    from sklearn.metrics import roc_auc_score

    diff = (scores[:, 1] - scores[:, 0]).numpy()
    pred = (diff > 0).astype(int)
    return float(roc_auc_score(labels.numpy(), diff)), float((pred == labels.numpy()).mean()), pred


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--arch", default="default", choices=["seed", "default"])
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--paper", action="store_true", help="384x384, 3 channels, seed network at width 32"
    )
    ap.add_argument("--classes", default="3,8", help="two sklearn digits")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.paper:
        args.image_size, args.channels, args.arch, args.width = 384, 3, "seed", 32
    return args


def split(args, x: torch.Tensor, y: torch.Tensor):
    """A seeded, class-balanced test set of ``n_test`` images; the rest trains."""
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    test_idx = torch.cat(
        [
            perm[y[perm] == 0][: args.n_test // 2],
            perm[y[perm] == 1][: args.n_test - args.n_test // 2],
        ]
    )
    return perm[~torch.isin(perm, test_idx)], test_idx


def train_model(args, ds):
    """The one model every method scores (trained here, seeded by TrainConfig)."""
    from sgc_core.sde import sde_from_dict
    from sgc_core.train import TrainConfig, train

    cfg = TrainConfig(
        image_size=args.image_size,
        channels=args.channels,
        arch=args.arch,
        width=args.width,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        flip=False,
    )
    t0 = time.perf_counter()
    tr = train(cfg, ds, progress=False)
    train_s = time.perf_counter() - t0
    model = tr.model.to(args.device).eval().requires_grad_(False)
    return model, sde_from_dict(cfg.sde), tr, train_s


def dequantized(x01: torch.Tensor, seed: int, device: str, levels: int = 256) -> torch.Tensor:
    """Uniformly dequantized 8-bit images in [-1, 1] (the likelihood's continuous input)."""
    gg = torch.Generator().manual_seed(seed)
    u = torch.rand(x01.shape, generator=gg)
    k = torch.clamp(torch.round(x01 * (levels - 1)), 0, levels - 1)
    return (2.0 * (k + u) / levels - 1.0).to(device)


def timed(device: str, fn, *fn_args):
    """(fn(*fn_args), seconds), with the GPU's queue drained before and after."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn(*fn_args)
    sync()
    return out, time.perf_counter() - t0


def run_torch_ode(model, sde, xd: torch.Tensor, chunk: int):
    """(b): our Dormand-Prince on ``chunk`` images x 2 classes per solve."""
    from sgc_core.likelihood_ode import ode_log_likelihood

    outs, nfes = [], []
    for s in range(0, len(xd), chunk):
        r = ode_log_likelihood(
            model,
            sde,
            xd[s : s + chunk],
            2,
            rtol=1e-5,
            atol=1e-5,
            probe="gaussian",
            generator=torch.Generator().manual_seed(2 + s),
        )
        outs.append(r.logp.cpu())
        nfes.append(r.nfe)
    return torch.cat(outs).double(), float(np.mean(nfes))


def run_elbo(model, sde, xd: torch.Tensor, k: int, weighting: str, sampling: str, big: bool):
    """(c): the ELBO with K shared (t, eps) pairs."""
    from sgc_core.elbo import elbo_scores

    per = max(1, 512 // (2 * k)) if not big else max(1, 16 // (2 * k) or 1)
    outs = []
    for s in range(0, len(xd), per):
        r = elbo_scores(
            model,
            sde,
            xd[s : s + per],
            2,
            k=k,
            t_sampling=sampling,
            weighting=weighting,
            generator=torch.Generator().manual_seed(3),
            same_noise_for_batch=True,
            max_batch=512 if not big else 8,
        )
        outs.append(r.score.cpu())
    return torch.cat(outs)


def all_methods(args, model, sde, xt: torch.Tensor, yt: torch.Tensor) -> list[tuple]:
    """One row per method: name, NFE, s/image, AUC, accuracy, agreement with (a), speed-up."""
    n, big = len(yt), args.image_size > 64
    (sa, nfe_a), ta = timed(args.device, paper_rule, model, sde, xt, 2, 256, 1, args.device)
    ta /= n
    auc_a, acc_a, pred_a = metrics(sa, yt)
    rows = [("(a) paper: scipy RK45 per class, 1 gaussian probe", f"{nfe_a:.0f}/class", ta, auc_a,
             acc_a, 1.0, 1.0)]  # fmt: skip
    xd = dequantized(xt, 1, args.device)
    chunk = max(1, min(n, 64 if not big else 1))
    (sb, nfe_b), tb = timed(args.device, run_torch_ode, model, sde, xd, chunk)
    auc_b, acc_b, pred_b = metrics(sb, yt)
    rows.append((f"(b) torch dopri5, {chunk} img x 2 classes per solve", f"{nfe_b:.0f}/solve",
                 tb / n, auc_b, acc_b, float((pred_b == pred_a).mean()), ta / (tb / n)))  # fmt: skip
    for weighting, sampling in (("uniform", "stratified"), ("likelihood", "importance")):
        for k in (8, 16, 32, 64):
            sc, tc = timed(args.device, run_elbo, model, sde, xd, k, weighting, sampling, big)
            auc_c, acc_c, pred_c = metrics(sc, yt)
            rows.append((f"(c) ELBO {weighting}/{sampling} K={k}", f"{k}/class", tc / n, auc_c,
                         acc_c, float((pred_c == pred_a).mean()), ta / (tc / n)))  # fmt: skip
    return rows


COLUMNS = ["method", "nfe", "s_per_image", "auc", "acc", "agree_a", "speedup"]


def report(args, rows, header: list[str], dev: str, train_s: float) -> None:
    """Print the table (and write it as JSON with ``--json``)."""
    for line in header:
        print(line)
    print(
        f"{'method':56s} {'NFE':>12s} {'s/image':>9s} {'AUC':>6s} {'acc':>6s} {'agree(a)':>8s} {'speedup':>8s}"
    )
    for name, nfe, t, auc, acc, agree, speed in rows:
        print(f"{name:56s} {nfe:>12s} {t:9.4f} {auc:6.3f} {acc:6.3f} {agree:8.3f} {speed:8.1f}x")
    if args.json:
        doc = {"device": dev, "args": vars(args), "train_seconds": train_s,
               "rows": [dict(zip(COLUMNS, r, strict=True)) for r in rows]}  # fmt: skip
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from sgc_core.datasets import TensorDataset

    a, b = (int(c) for c in args.classes.split(","))
    x, y = digits(args.image_size, args.channels, a, b)
    train_idx, test_idx = split(args, x, y)
    ds = TensorDataset(x[train_idx], y[train_idx].tolist(), [str(a), str(b)])
    model, sde, tr, train_s = train_model(args, ds)
    xt, yt = x[test_idx], y[test_idx]
    rows = all_methods(args, model, sde, xt, yt)
    dev = (
        torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"{platform.processor() or platform.machine()} CPU, {args.threads} thread(s)"
    )
    params = sum(p.numel() for p in model.parameters()) / 1e6
    header = [
        f"device: {dev}; torch {torch.__version__}",
        f"data: digits {a} vs {b}, {args.image_size}x{args.image_size}x{args.channels}, "
        f"train {len(ds)}, test {len(yt)}",
        f"model: {args.arch} width {args.width} ({params:.2f} M params), "
        f"{args.steps} steps in {train_s:.0f} s, final loss {np.mean(tr.losses[-50:]):.4f}",
    ]
    report(args, rows, header, dev, train_s)


if __name__ == "__main__":
    main()
