"""Where each normal view's top finding lies, from the chest wall (0) to the nipple (1).

    python -m benchmarks.finding_depth --views sgc_core/models/eval-lesion/views.json \\
        --images test=DRAW/family/images --images held-out=DRAW/held-out/images

Why: on the held-out style the finder calls normal views malignant far more often than on the
training styles, from a few lesion-like spots rather than a shifted texture (docs/model.md),
so a texture-level check cannot see it. Where those spots lie says what the finder mistakes
for a lesion. The depth is measured on the scan grid (chest wall at column 0 for every
laterality) as the top finding's column over the breast's deepest column.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--views", type=Path, required=True, help="an evaluation's views.json")
    p.add_argument(
        "--images",
        action="append",
        required=True,
        metavar="PART=FOLDER",
        help="where a part's studies lie (FOLDER/<patient>/<view file>); repeatable",
    )
    return p.parse_args(argv)


def depth(path: Path, centre: tuple[float, float], spacing_mm: float = 0.4) -> float:
    """The source-pixel ``centre``'s depth in the breast of the image at ``path``."""
    import pydicom

    from sgc_core.scan_geometry import scan_dataset

    scan = scan_dataset(pydicom.dcmread(path), spacing_mm)
    _, col = scan.geometry.to_scan(np.array([centre[0]]), np.array([centre[1]]))
    deepest = int(np.flatnonzero(scan.mask.any(0)).max())
    return float(col[0] / max(deepest, 1))


def normal_tops(views: list[dict], part: str, root: Path) -> np.ndarray:
    """(N, 2): depth and P(malignant) of the top finding of each normal view in ``part``."""
    rows = [
        (depth(root / v["patient"] / v["path"], v["findings"][0]["centre"]),
         v["findings"][0]["p_malignant"])
        for v in views
        if v["part"] == part and v["finding"] == "normal" and v["findings"]
    ]  # fmt: skip
    return np.array(rows, dtype=float).reshape(-1, 2)


def summary(tops: np.ndarray) -> dict:
    q1, med, q3 = np.quantile(tops[:, 0], [0.25, 0.5, 0.75]) if len(tops) else [np.nan] * 3
    return {
        "views": len(tops),
        "depth_quartiles": [round(float(q), 3) for q in (q1, med, q3)],
        "mean_p_malignant": round(float(tops[:, 1].mean()), 3) if len(tops) else None,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    views = json.loads(args.views.read_text())
    for spec in args.images:
        part, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"--images {spec!r}: expected PART=FOLDER")
        got = summary(normal_tops(views, part, Path(folder)))
        q = got["depth_quartiles"]
        print(
            f"{part}: {got['views']} normal views with a finding; top finding's depth "
            f"(0 chest wall, 1 nipple) quartiles {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}; "
            f"its mean P(malignant) {got['mean_p_malignant']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
