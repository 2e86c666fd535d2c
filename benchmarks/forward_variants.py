"""One forward call of the bundled lesion network on CPU, as run and with PyTorch's own levers.

    python -m benchmarks.forward_variants --threads 1 --rows 96 [--compile]

Why: after the memory-budget work (docs/benchmarks.md, "CPU path") the classifier's CPU
time is the network's arithmetic, so the remaining question of the 3x goal is whether
PyTorch can run the same network faster here: channels-last tensors (oneDNN's preferred
layout), TorchScript trace + freeze, ``optimize_for_inference``, and ``torch.compile``
(inductor; its compile time is printed). Each variant runs the same (x, t, y) rows; printed:
milliseconds per row (wall and CPU), the speed-up over the model as run, and the largest
difference of its output from the model's as run.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("sgc_core/models/sgc-lesion-mammo"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=96, help="rows of one forward call")
    p.add_argument("--repeat", type=int, default=6)
    p.add_argument("--compile", action="store_true", help="also torch.compile (about a minute)")
    return p.parse_args(argv)


def timed(fn, rows: int, repeat: int):
    """(output, wall ms per row, CPU ms per row) of ``repeat`` calls after one warm-up."""
    import torch

    with torch.inference_mode():
        out = fn()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(repeat):
            fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, 1000 * wall / repeat / rows, 1000 * cpu / repeat / rows


def variants(net, x, t, y, with_compile: bool):
    """(name, callable, seconds to prepare) of every variant, the model as run first."""
    import torch

    yield "as run", lambda: net(x, t, y), 0.0
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    yield "channels_last", lambda: cl(xc, t, y), 0.0
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(copy.deepcopy(net), (x, t, y), check_trace=False))
    yield "TorchScript trace + freeze", lambda: frozen(x, t, y), 0.0
    fast = torch.jit.optimize_for_inference(frozen)
    yield "optimize_for_inference", lambda: fast(x, t, y), 0.0
    if with_compile:
        t0 = time.perf_counter()
        compiled = torch.compile(copy.deepcopy(net))
        with torch.inference_mode():
            compiled(x, t, y)
        yield "torch.compile", lambda: compiled(x, t, y), time.perf_counter() - t0


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from sgc_core.view_model import load_view_model

    torch.set_num_threads(args.threads)
    net = load_view_model(args.model).scanner.model.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, 1, 64, 64, generator=g)
    t = 0.05 + 0.3 * torch.rand(args.rows, generator=g)
    y = torch.randint(0, 3, (args.rows,), generator=g)
    print(f"# {args.model} torch {torch.__version__}, {args.threads} thread(s), {args.rows} rows")
    base = None
    for name, fn, prep in variants(net, x, t, y, args.compile):
        out, wall, cpu = timed(fn, args.rows, args.repeat)
        base = base or (out, wall)
        diff = float((out - base[0]).abs().max() / base[0].abs().max())
        extra = f", prepared in {prep:.0f} s" if prep else ""
        print(
            f"{name:28s} {wall:6.2f} ms/row wall {cpu:6.2f} ms/row CPU  speed-up "
            f"{base[1] / wall:4.2f}x  max relative difference {diff:.1e}{extra}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
