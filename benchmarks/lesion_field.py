"""Field of view on crops: does a wider window tell malignant from benign lesions apart?

    python -m benchmarks.lesion_field --data DIR --fields 64@0.4,64@0.8 --steps 600 \
        --out benchmarks/results/lesion_field/small.json
    python -m benchmarks.lesion_field --data DIR --fields 128@0.4 --steps 600 \
        --out benchmarks/results/lesion_field/wide.json

Why: the finder's window is 64 px at 0.4 mm, 25.6 mm across (12.8 mm from its centre). The
family's malignant masses reach further than that from their centre with their margin and
spicules (``lesion_radius_px`` in a synth set's labels.csv: a circle holding the whole
lesion), and the margin and spicules are what make a mass malignant. A window centred on such
a mass sees its body, not its outline. Fields, each ``CROP@SPACING`` (pixels at mm per pixel):

- ``64@0.4``: the bundled finder's;
- ``128@0.4``: twice the field at the same resolution (4 times the pixels per window);
- ``64@0.8``: the same wider field in the same pixels as 64@0.4 (a control: field without
  the pixel count; coarser than the 0.4 mm the finder is meant to see).

Every field cuts its crops from the same views of one synth folder (its train / val / test
splits by patient; the held-out style, if present, is left out), with the lesion jitter at a
quarter of the field and background crops at least a lesion radius plus 3/4 field from any
lesion. Per field the SGC and the CNN of ``benchmarks/lesion_quality.py`` are trained with
the same steps and batch; temperatures are fitted on validation crops. Printed per field and
model: test AUC malignant vs rest, lesion vs normal and malignant vs benign, overall and per
lesion kind (masses and distortion / calcification clusters), training and scoring seconds.
Where both models ran, a line per field gives SGC / CNN: the ratio of each AUC and, in
brackets, the difference (also in the JSON as the field's ``sgc/cnn`` row).
Nothing here is chosen on test.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.lesion_quality import (
    UNIFORM,
    BenchmarkError,
    first_n,
    run_model,
    validation_set,
    write,
)
from benchmarks.lesion_report import ratios
from benchmarks.model_quality import nested_order
from sgc_core.datasets.crops import (
    CropDataError,
    CropRecipe,
    CropSet,
    build_crops,
    read_synthetic_annotations,
)
from sgc_core.synth.styles import HELD_OUT_STYLE

KINDS = ("mass", "calcification")


def parse_field(text: str) -> tuple[int, float]:
    """``"128@0.4"`` -> (128, 0.4)."""
    try:
        crop, spacing = text.split("@")
        out = int(crop), float(spacing)
    except ValueError:
        raise BenchmarkError(f"field {text!r}: expected CROP@SPACING, e.g. 64@0.4") from None
    if out[0] < 16 or out[0] % 16 or out[1] <= 0:
        raise BenchmarkError(f"field {text!r}: crop a multiple of 16 px, spacing > 0 mm")
    return out


def lesion_kinds(folder: Path) -> dict[str, str]:
    """View path -> ``mass`` or ``calcification`` (its lesion's kind), from labels.csv."""
    with (folder / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        str(folder / r["path"]): "calcification" if r["lesion_type"].startswith("calc") else "mass"
        for r in rows
        if r["finding"] != "normal"
    }


def field_crops(folder: Path, crop: int, spacing: float, workers: int, seed: int) -> dict:
    """train / val / test crops of one field, and the test crops of each lesion kind (the
    lesion views of that kind with their own background crops)."""
    notes = [n for n in read_synthetic_annotations(folder) if n.style != HELD_OUT_STYLE]
    recipe = CropRecipe(spacing_mm=spacing, crop=crop, stride=crop // 2, seed=seed)
    kinds = lesion_kinds(folder)
    out = {}
    for split in ("train", "val", "test"):
        out[split] = build_crops([n for n in notes if n.split == split], recipe, workers)
    for kind in KINDS:
        mine = [n for n in notes if n.split == "test" and kinds.get(n.path) == kind]
        out[f"test_{kind}"] = build_crops(mine, recipe, workers)
    return out


def cap(crops: CropSet, limit: int, seed: int):
    """At most ``limit`` crops, a seeded class-stratified choice (scoring cost at 128 px)."""
    data = crops.dataset()
    return first_n(data, nested_order(data.labels, seed + 2), min(limit, len(data)))


def run_field(field: str, args) -> list[dict]:
    crop, spacing = parse_field(field)
    t0 = time.perf_counter()
    parts = field_crops(args.data, crop, spacing, args.workers, args.seed)
    cut_s = round(time.perf_counter() - t0, 1)
    counts = {k: np.bincount(p.labels, minlength=3).tolist() for k, p in parts.items()}
    print(f"{field}: crops (normal, benign, malignant) {counts}; cut in {cut_s} s", flush=True)
    val = validation_set(parts["val"], args.val_max, args.seed)
    tests = {  # a lesion kind absent from the test split has no row (not an empty score)
        k: cap(p, args.test_max, args.seed)
        for k, p in parts.items()
        if k.startswith("test") and len(p.labels)
    }
    rows = []
    for name in args.models.split(","):
        r = run_model(name, parts["train"].dataset(), val, tests, args)
        r.update(field=field, crop=crop, spacing_mm=spacing, field_mm=crop * spacing)
        r["class_counts"] = counts
        rows.append(r)
        print_row(r)
    for ratio in ratios([dict(r, n=field) for r in rows]):  # both models run: SGC / CNN
        rows.append({"field": field, "model": "sgc/cnn", **ratio})
        print(f"{field:>8} SGC / CNN, AUC ratio (difference): " + _ratio_text(ratio), flush=True)
    return rows


def _ratio_text(ratio: dict) -> str:
    names = {"auc_malignant": "mal", "auc_lesion": "lesion", "auc_malignant_vs_benign": "mal/ben"}
    return ", ".join(
        f"{short} {_num(ratio[f'{key}_ratio'])} ({_num(ratio[f'{key}_difference'])})"
        for key, short in names.items()
    )


def print_row(r: dict) -> None:
    cells = []
    for key in ("test", "test_mass", "test_calcification"):
        m = r.get(key, {})
        metrics = ("auc_malignant", "auc_lesion", "auc_malignant_vs_benign")
        cells.append(" ".join(_num(m.get(k)) for k in metrics))
    print(
        f"{r['field']:>8} {r['field_mm']:5.1f} mm {r['model']:>4} | "
        + " | ".join(cells)
        + f" | {r['seconds_train']:.0f} s train, {r['seconds_score']:.0f} s score",
        flush=True,
    )


def _num(v: float | None) -> str:
    return "  n/a" if v is None else f"{v:.3f}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="`sgc synth` folder (its splits)")
    p.add_argument("--fields", default="64@0.4,128@0.4,64@0.8", help="CROP@SPACING, ...")
    p.add_argument("--steps", type=int, default=600, help="optimiser steps per model and field")
    p.add_argument("--models", default="sgc,cnn", help="sgc, cnn or both (the CNN is cheap)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--cnn-width", type=int, default=None)
    p.add_argument("--sgc-lr", type=float, default=5e-4)
    p.add_argument("--cnn-lr", type=float, default=2e-3)
    p.add_argument("--k", type=int, default=4, help="shared (t, eps) pairs per crop")
    p.add_argument("--t-min", type=float, default=0.02)
    p.add_argument("--t-max", type=float, default=0.5)
    p.add_argument("--val-max", type=int, default=200, help="validation crops (temperatures)")
    p.add_argument("--test-max", type=int, default=600, help="test crops per test set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=2, help="processes cutting crops")
    p.add_argument("--out", type=Path, default=None, help="results (JSON)")
    args = p.parse_args(argv)
    args.t_range = (args.t_min, args.t_max)
    if not 0.0 < args.t_min < args.t_max <= 1.0:
        p.error("need 0 < --t-min < --t-max <= 1")
    if not args.models or set(args.models.split(",")) - {"sgc", "cnn"}:
        p.error(f"--models {args.models!r}: sgc, cnn or sgc,cnn")
    if not (args.data / "labels.csv").is_file():
        p.error(f"--data {args.data}: no labels.csv (a folder written by `sgc synth`)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"data {args.data}; {args.steps} steps x {args.batch} crops per model; K {args.k}, "
        f"t in [{args.t_min}, {args.t_max}]; uniform priors {UNIFORM}",
        flush=True,
    )
    print(
        "   field         model | all: mal, lesion, mal/ben | masses | calcifications", flush=True
    )
    rows: list[dict] = []
    try:
        for field in args.fields.split(","):
            rows += run_field(field.strip(), args)
            settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
            write({"settings": settings, "results": rows}, args.out)
    except (BenchmarkError, CropDataError) as exc:
        print(f"lesion_field: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
