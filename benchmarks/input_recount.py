"""In-family views flagged by today's model-free input checks, against a recorded evaluation.

    python -m benchmarks.input_recount --views sgc_core/models/eval-lesion/views.json \\
        --data DRAW   # the seed-808 draw the views came from (family/ and held-out/)
    python -m benchmarks.input_recount --data DRAW   # every view of a draw, no record

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
