"""In-family views flagged by today's model-free input checks, against a recorded evaluation.

    python -m benchmarks.input_recount --views sgc_core/models/eval-lesion/views.json \\
        --data DRAW   # the seed-808 draw the views came from (family/ and held-out/)
    python -m benchmarks.input_recount --data DRAW   # every view of a draw, no record
    python -m benchmarks.input_recount --data DRAW --shape   # and the shape check's margins

Why: a new input check (sgc_core/input_checks.py) changes which views are flagged out of
distribution without touching the model, so its cost on real-looking mammograms can be
counted on an evaluation's own views without scanning them again: a view is flagged now
when it was flagged then, or when the checks give it a reason today.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--views", type=Path, default=None, help="a lesion_eval views.json")
    p.add_argument("--data", type=Path, required=True, help="the draw its views came from")
    p.add_argument(
        "--shape", action="store_true", help="also print the spread of the shape measures"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import pydicom

    from sgc_core.scan_geometry import scan_dataset

    warnings.filterwarnings("ignore", module="pydicom")
    files = {(f.parent.name, f.name): f for f in sorted(args.data.rglob("*.dcm"))}
    if args.views is None:  # every view of the draw, none flagged before
        rows = [{"part": "all", "patient": p, "path": n, "ood": False} for p, n in files]
    else:
        rows = json.loads(args.views.read_text())
    missing = [r for r in rows if (r["patient"], r["path"]) not in files]
    if missing:
        raise SystemExit(f"{len(missing)} views of {args.views} are not under {args.data}")
    for part in dict.fromkeys(r["part"] for r in rows):
        sel = [r for r in rows if r["part"] == part]
        new = []
        for r in sel:
            ds = pydicom.dcmread(files[(r["patient"], r["path"])])
            reasons = scan_dataset(ds, 0.4).ood_reasons
            if reasons and not r["ood"]:
                new.append(f"  {r['patient']} {r['path']}: {'; '.join(reasons)}")
        then = sum(bool(r["ood"]) for r in sel)
        now = then + len(new)
        print(f"{part}: {len(sel)} views; flagged then {then}; by the input checks, newly ", end="")
        print(f"{len(new)}; flagged now {now} ({now / len(sel):.1%})")
        for line in new:
            print(line)
    if args.shape:
        shape_margins([files[(r["patient"], r["path"])] for r in rows])
    return 0


def shape_margins(paths) -> None:
    """How far the views lie from the shape check's thresholds (sgc_core/input_checks.py):
    the least, 1st and 5th percentile and median of the chest-wall runs and the solidity."""
    import numpy as np
    import pydicom
    from skimage.morphology import convex_hull_image

    from sgc_core.input_checks import SHAPE_SIDE, _chest_wall_closed, chest_wall_runs
    from sgc_core.pixels import presentation_values
    from sgc_core.preprocess import breast_mask

    runs, solidity = [], []
    for path in paths:
        mask = breast_mask(presentation_values(pydicom.dcmread(path)), 0.05)
        if mask is None:
            continue
        step = max(1, -(-max(mask.shape) // SHAPE_SIDE))
        small = _chest_wall_closed(mask[::step, ::step])
        runs.append(chest_wall_runs(small))
        solidity.append(small.sum() / convex_hull_image(small).sum())
    for name, values in (("chest-wall runs", runs), ("solidity", solidity)):
        q = np.percentile(values, [0, 1, 5, 50])
        print(
            f"{name} over {len(values)} views: least {q[0]:.3f}, 1st percentile {q[1]:.3f}, ",
            end="",
        )
        print(f"5th {q[2]:.3f}, median {q[3]:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
