"""Bootstrap intervals of a lesion finder's goal figures, resampling patients, not views.

    python -m benchmarks.lesion_intervals --views sgc_core/models/eval-lesion/views.json
    python -m benchmarks.lesion_intervals --views A/views.json --paired B/views.json

Why patients: a study's four views share one anatomy and, on the lesion side, one lesion, so
views are not independent draws; resampling views would draw intervals too narrow. Each
resample takes patients with replacement and keeps all their views. Reads the per-view rows
that ``benchmarks/lesion_eval.py`` writes (``views.json``); ``--paired`` gives the interval of
the difference of two finders on the same views (matched by patient and file), from the same
resamples, which is tighter than comparing two separate intervals.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

QUANTILES = (0.05, 0.5, 0.95)


def auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def goal_figures(rows: Sequence[dict]) -> dict[str, float]:
    """View AUC malignant vs rest and vs benign-lesion views, top-finding rate, ECE (15 bins).

    The top-finding rate needs each malignant row's ``top_hit`` (rows written before it was
    recorded have none: the figure is then NaN)."""
    from sgc_core.evaluation import expected_calibration_error

    rows = [r for r in rows if r["p_malignant"] is not None]
    p = np.array([r["p_malignant"] for r in rows], dtype=float)
    finding = np.array([r["finding"] for r in rows])
    mal, lesion = finding == "malignant", finding != "normal"
    hits = [r.get("top_hit") for r in rows if r["finding"] == "malignant"]
    known = [h for h in hits if h is not None]
    return {
        "auc_malignant_vs_rest": auc(mal, p),
        "auc_malignant_vs_benign_lesion": auc(mal[lesion], p[lesion]),
        "top_finding_hit": float(np.mean(known)) if hits and len(known) == len(hits) else np.nan,
        "ece": expected_calibration_error(np.stack([1 - p, p], 1), mal.astype(int)),
    }


def patient_resamples(rows: Sequence[dict], n: int, seed: int) -> list[list[int]]:
    """``n`` lists of row indices, each drawn by taking patients with replacement."""
    by_patient: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_patient.setdefault(r["patient"], []).append(i)
    groups = list(by_patient.values())
    rng = np.random.default_rng(seed)
    return [
        [i for g in rng.integers(0, len(groups), len(groups)) for i in groups[g]] for _ in range(n)
    ]


def intervals(
    rows: Sequence[dict],
    n: int = 2000,
    seed: int = 0,
    figures: Callable[[Sequence[dict]], dict[str, float]] = goal_figures,
) -> dict[str, dict]:
    """Each figure's value on ``rows`` and its 5 / 50 / 95 % over patient resamples."""
    draws = [figures([rows[i] for i in idx]) for idx in patient_resamples(rows, n, seed)]
    return {k: _summary(v, [d[k] for d in draws]) for k, v in figures(rows).items()}


def paired_intervals(a: Sequence[dict], b: Sequence[dict], n: int = 2000, seed: int = 0) -> dict:
    """Figures of ``a`` minus those of ``b`` on the views both scored, same resamples."""
    index = {(r["patient"], r["path"]): r for r in b}
    pairs = [(r, index[(r["patient"], r["path"])]) for r in a if (r["patient"], r["path"]) in index]

    def difference(sub: Sequence[tuple[dict, dict]]) -> dict[str, float]:
        fa, fb = goal_figures([x for x, _ in sub]), goal_figures([y for _, y in sub])
        return {k: fa[k] - fb[k] for k in fa}

    rows = [dict(x, pair=(x, y)) for x, y in pairs]
    return intervals(rows, n, seed, lambda sub: difference([r["pair"] for r in sub]))


def read_rows(path: Path) -> list[dict]:
    """The per-view rows of an evaluation, or a one-line refusal naming the file and why."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: not a readable views.json ({exc.__class__.__name__})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "part" in r for r in rows):
        raise SystemExit(f"{path}: expected a list of per-view rows (lesion_eval's views.json)")
    return rows


def _summary(value: float, draws: Sequence[float]) -> dict:
    finite = np.array([d for d in draws if np.isfinite(d)])
    q = np.quantile(finite, QUANTILES).tolist() if finite.size else [np.nan] * len(QUANTILES)
    out = {"value": value, "q05": q[0], "q50": q[1], "q95": q[2]}
    out["fraction_at_or_below_0"] = float(np.mean(finite <= 0)) if finite.size else np.nan
    return out


def _print(title: str, table: dict) -> None:
    print(title)
    for k, s in table.items():
        print(
            f"  {k:32s} {s['value']:7.3f}   5/50/95 %: {s['q05']:.3f} {s['q50']:.3f} "
            f"{s['q95']:.3f}   resamples <= 0: {s['fraction_at_or_below_0']:.4f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--views", type=Path, required=True, help="views.json of lesion_eval")
    p.add_argument("--paired", type=Path, help="a second views.json: intervals of the difference")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = read_rows(args.views)
    other = read_rows(args.paired) if args.paired else None
    for part in sorted({r["part"] for r in rows}):
        mine = [r for r in rows if r["part"] == part]
        patients = len({r["patient"] for r in mine})
        _print(
            f"{part}: {len(mine)} views, {patients} patients",
            intervals(mine, args.resamples, args.seed),
        )
        if other is not None:
            theirs = [r for r in other if r["part"] == part]
            table = paired_intervals(mine, theirs, args.resamples, args.seed)
            _print(f"{part}: {args.views} minus {args.paired}, same views", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
