"""Write again the studies (and their labels.csv) an evaluation scored, from their seed alone.

    python -m benchmarks.redraw_truth --views sgc_core/models/eval-lesion/views.json \\
        --part test --seed 808 --out /tmp/t808

Why: an evaluation's views.json keeps each view's patient and file but not the lesion's
morphology or the breast's density; a study of a ``sgc synth`` draw depends on (seed, index)
only, so the scored studies can be written again, a few minutes instead of the whole draw's
half hour, and read with benchmarks/lesion_by_type.py. The options must be the draw's own
(the bundled model's draws: medium, difficulty 0.3, 25 % normal, mixed without ducts; its
held-out part is seed + 1, style ducts).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--views", type=Path, required=True, help="an evaluation's views.json")
    p.add_argument("--part", default="test", help="the rows' part (test, held-out)")
    p.add_argument("--seed", type=int, required=True, help="the draw's synth seed")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", default="medium")
    p.add_argument("--difficulty", type=float, default=0.3)
    p.add_argument("--normal-fraction", type=float, default=0.25)
    p.add_argument("--style", default="mixed")
    p.add_argument("--hold-out", default="ducts")
    p.add_argument("--workers", type=int, default=2)
    return p.parse_args(argv)


def patients(views: Path, part: str, seed: int) -> list[int]:
    """The study indices of ``part``'s rows, refused in one line if none is of ``seed``."""
    rows = json.loads(views.read_text())
    prefix = f"SYN{seed:04d}-" if seed < 10**4 else f"SYN{seed}-"
    ids = sorted({r["patient"] for r in rows if r.get("part") == part})
    if not ids or not all(i.startswith(prefix) for i in ids):
        raise SystemExit(f"{views}: part {part!r} has no studies of seed {seed} ({prefix}...)")
    return [int(i[len(prefix) :]) for i in ids]


def main(argv=None) -> int:
    args = parse_args(argv)
    from sgc_core.synth.config import SynthConfig
    from sgc_core.synth.dataset import parse_size, write_studies

    rows, cols = parse_size(args.size)
    config = SynthConfig(
        rows=rows,
        cols=cols,
        difficulty=args.difficulty,
        normal_fraction=args.normal_fraction,
        style=args.style,
        hold_out=None if args.hold_out == "none" else args.hold_out,
    )
    indices = patients(args.views, args.part, args.seed)
    written = write_studies(args.out, indices, args.seed, config, args.workers)
    with (args.out / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(written[0]))
        writer.writeheader()
        writer.writerows(written)
    print(f"{len(written)} views of {len(written) // 4} studies written under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
