"""The element-wise mean of two or more finders' weights, saved as a model to recalibrate.

    python -m benchmarks.weight_mean --model sgc_core/models/sgc-lesion-mammo \
        --model benchmarks/results/lesion_i/weights/sgc-lesion-mammo \
        --version 0.13.0-s --out /tmp/s/sgc-lesion-mammo

Why: two fine-tunings of one network (the bundled weights and candidate I, which continued
from them) may read, with their weights averaged, close to the average of their outputs at
the cost of one network per window (candidate S: 0.929 view AUC where the output mean
read 0.931 on the same views, docs/benchmarks.md). The mean is only meaningful for networks that share
their starting point, so models whose architectures differ are refused in one line. The
card is the last model's (its scan settings and its fitted numbers, which belong to other
weights: recalibrate before reading, ``train_lesion_model --init OUT --recalibrate``), with
the sources named.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, action="append", required=True, help="repeatable")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--version", required=True, help="the written card's version")
    return p.parse_args(argv)


def mean_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors' mean, computed in float32 and stored in each tensor's own dtype."""
    first = states[0]
    return {
        k: (sum(s[k].float() for s in states) / len(states)).to(v.dtype).contiguous()
        for k, v in first.items()
    }


def main(argv=None) -> int:
    from sgc_core.checkpoint import ModelFileError, load_model, save_model

    args = parse_args(argv)
    if len(args.model) < 2:
        raise SystemExit("--model: give two or more models to average")
    try:
        loaded = [load_model(m) for m in args.model]
    except ModelFileError as exc:
        raise SystemExit(f"--model: {exc}") from None
    cards = [card for _, card in loaded]
    if any(c["architecture"] != cards[0]["architecture"] for c in cards):
        raise SystemExit("--model: the architectures differ; only one network's weights average")
    model = loaded[-1][0]
    model.load_state_dict(mean_state([m.state_dict() for m, _ in loaded]))
    sources = [f"{c['name']} {c['version']} ({c['sha256'][:16]})" for c in cards]
    card = dict(cards[-1], version=args.version, weights_mean_of=sources)
    weights, _ = save_model(args.out, model, card)
    print(f"wrote {weights}: the mean of {', '.join(sources)}; recalibrate before reading")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
