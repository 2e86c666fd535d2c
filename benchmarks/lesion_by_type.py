"""A finder's readings per lesion morphology: which lesions it grades wrong and which it misses.

    python -m benchmarks.lesion_by_type --views sgc_core/models/eval-lesion/views.json \\
        --labels test=DRAW/family/labels.csv --labels held-out=DRAW/held-out/labels.csv

Why: the goals are missed mostly on malignant against benign (docs/model.md); a single AUC
cannot say whether every malignant morphology is graded a little low or one is graded as
benign. Per lesion type of a synthetic (or any) folder whose labels.csv has ``lesion_type``:
the views, their mean and median P(malignant), the top finding's hit rate and the share with
the lesion among any finding (malignant types),
and the AUC of that type against the other class's lesion views (a malignant type against all
benign lesion views, a benign type against all malignant ones).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from benchmarks.lesion_intervals import auc, read_rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--views", type=Path, required=True, help="an evaluation's views.json")
    p.add_argument(
        "--labels",
        action="append",
        required=True,
        metavar="PART=LABELS_CSV",
        help="the labels.csv of a part's folder (with a lesion_type column); repeatable",
    )
    p.add_argument(
        "--detail",
        action="store_true",
        help="one line per type, variant and style (labels.csv's lesion_variant and style)",
    )
    return p.parse_args(argv)


def lesion_types(labels: Path, detail: bool = False) -> dict[tuple[str, str], str]:
    """(patient, view file) -> lesion type ('normal' for a view without a lesion); with
    ``detail``, "type:variant@style", so a morphology weak on one texture is named."""
    if not labels.is_file():
        raise SystemExit(f"{labels}: not found")
    with labels.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if "lesion_type" not in (reader.fieldnames or []):
            raise SystemExit(f"{labels}: no lesion_type column")
        return {(r["patient_id"], Path(r["path"]).name): _kind(r, detail) for r in reader}


def _kind(row: dict, detail: bool) -> str:
    kind = row["lesion_type"] or "normal"
    if not detail:
        return kind
    variant = f":{row['lesion_variant']}" if row.get("lesion_variant") else ""
    return f"{kind}{variant}@{row.get('style') or '?'}"


def by_type(rows: list[dict], types: dict[tuple[str, str], str]) -> list[dict]:
    """One line per lesion type of the scored ``rows``, malignant types first."""
    scored = [r for r in rows if r["p_malignant"] is not None]
    kind = [types.get((r["patient"], r["path"]), "?") for r in scored]
    p = np.array([r["p_malignant"] for r in scored], dtype=float)
    finding = np.array([r["finding"] for r in scored])
    lines = []
    for t in sorted(set(kind), key=lambda t: (-_rank(finding, kind, t), t)):
        here = np.array([k == t for k in kind])
        cls = finding[here][0]
        other = {"malignant": "benign", "benign": "malignant"}.get(cls)
        line = {"type": t, "class": cls, "views": int(here.sum()),
                "mean_p": float(p[here].mean()), "median_p": float(np.median(p[here]))}  # fmt: skip
        if other:
            rest = finding == other
            y = np.r_[np.ones(here.sum()), np.zeros(rest.sum())] == (cls == "malignant")
            line["auc_vs_" + other] = auc(y, np.r_[p[here], p[rest]])
        if cls == "malignant":
            hits = [scored[i].get("top_hit") for i in np.flatnonzero(here)]
            line["top_hit"] = float(np.mean(hits)) if None not in hits else float("nan")
            among = [any(scored[i].get("hits") or []) for i in np.flatnonzero(here)]
            line["among_findings"] = float(np.mean(among))
        lines.append(line)
    return lines


def _rank(finding: np.ndarray, kind: list[str], t: str) -> int:
    cls = finding[[k == t for k in kind]][0]
    return {"malignant": 2, "benign": 1}.get(cls, 0)


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = read_rows(args.views)
    for spec in args.labels:
        part, sep, path = spec.partition("=")
        if not sep or not path:
            raise SystemExit(f"--labels {spec!r}: expected PART=LABELS_CSV")
        mine = [r for r in rows if r["part"] == part]
        print(f"{part}: {len(mine)} views")
        for line in by_type(mine, lesion_types(Path(path), args.detail)):
            print(printed(line))
    return 0


def printed(line: dict) -> str:
    """One of ``by_type``'s lines as the scripts print it."""
    cells = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in line.items()]
    return "  " + "  ".join(cells)


if __name__ == "__main__":
    raise SystemExit(main())
