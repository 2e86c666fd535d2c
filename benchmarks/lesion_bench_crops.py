"""The crop set of the recorded lesion_quality run: the bundled model's family crops plus the
held-out style's crops, as one CropSet.

    python -m benchmarks.lesion_bench_crops          # after benchmarks/train_lesion_model.py

Every crop of the held-out folder is a test crop (no model trains or calibrates on that
style); the test crops of both parts are subsampled (450 each, seeded) to bound the SGC's
scoring cost on a CPU. Writes data/lesion-synth/bench-crops.npz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TEST_CROPS = 450


def main() -> int:
    from benchmarks.train_lesion_model import make_crops
    from sgc_core.datasets.crops import CropSet

    root = ROOT / "data" / "lesion-synth"
    fam, held = make_crops(root / "family", 2), make_crops(root / "held-out", 2)
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
    out.save(root / "bench-crops.npz")
    print({s: int((out.splits == s).sum()) for s in ("train", "val", "test")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
