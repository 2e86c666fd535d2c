"""The crop set of the recorded lesion_quality run: the bundled model's family crops plus the
held-out style's crops, as one CropSet.

    python -m benchmarks.lesion_bench_crops          # after benchmarks/train_lesion_model.py
    python -m benchmarks.lesion_bench_crops --family DIR --held-out DIR --out FILE

Every crop of the held-out folder is a test crop (no model trains or calibrates on that
style); the test crops of both parts are subsampled (450 each, seeded) to bound the SGC's
scoring cost on a CPU. Writes data/lesion-synth/bench-crops.npz by default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TEST_CROPS = 450

DATA = ROOT / "data" / "lesion-synth"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--family", type=Path, default=DATA / "family", help="the family's synthetic set"
    )
    p.add_argument(
        "--held-out", type=Path, default=DATA / "held-out", help="the held-out style's set"
    )
    p.add_argument("--out", type=Path, default=DATA / "bench-crops.npz", help="the crop set")
    p.add_argument("--workers", type=int, default=2, help="processes cutting the crops")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from benchmarks.train_lesion_model import make_crops
    from sgc_core.datasets.crops import CropSet

    args = parse_args(argv)
    for folder in (args.family, args.held_out):
        if not folder.is_dir():
            raise SystemExit(f"no synthetic set at {folder}: run benchmarks.train_lesion_model")
    fam = make_crops(args.family, args.workers)
    held = make_crops(args.held_out, args.workers)
    rng = np.random.default_rng(0)

    def pick(mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return np.sort(rng.choice(idx, size=min(TEST_CROPS, len(idx)), replace=False))

    keep_f = np.concatenate([np.flatnonzero(fam.splits != "test"), pick(fam.splits == "test")])
    keep_h = pick(np.ones(len(held.labels), dtype=bool))
    out = CropSet(
        images=np.concatenate([fam.images[keep_f], held.images[keep_h]]),
        labels=np.concatenate([fam.labels[keep_f], held.labels[keep_h]]),
        splits=np.concatenate([fam.splits[keep_f], np.array(["test"] * len(keep_h))]),
        styles=np.concatenate([fam.styles[keep_f], held.styles[keep_h]]),
        recipe=fam.recipe,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.save(args.out)
    print({s: int((out.splits == s).sum()) for s in ("train", "val", "test")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
