"""The metrics and the report of benchmarks/lesion_quality.py: AUCs and accuracy per crop set,
the SGC against the CNN per N (ratio and difference), the drop on the held-out style, and the
printed table.

Split from lesion_quality.py (which trains and scores) so each file stays small; nothing here
trains or reads data.
"""

from __future__ import annotations

import numpy as np

from benchmarks.model_quality import fmt
from sgc_core.datasets.crops import CROP_CLASSES

NORMAL, BENIGN, MALIGNANT = (CROP_CLASSES.index(c) for c in ("normal", "benign", "malignant"))
AUCS = ("auc_malignant", "auc_lesion", "auc_malignant_vs_benign")
METRICS = (*AUCS, "accuracy")


def auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return None  # one class only: no AUC
    return float(roc_auc_score(positive, score))


def crop_metrics(logp: np.ndarray, labels: np.ndarray) -> dict:
    """Test metrics from (N, 3) log posteriors; each AUC ranks by the posterior it names."""
    lesion = labels != NORMAL
    return {
        "auc_malignant": auc(labels == MALIGNANT, logp[:, MALIGNANT]),
        "auc_lesion": auc(lesion, -logp[:, NORMAL]),
        "auc_malignant_vs_benign": auc(
            labels[lesion] == MALIGNANT, logp[lesion, MALIGNANT] - logp[lesion, BENIGN]
        ),
        "accuracy": float((logp.argmax(1) == labels).mean()),
        "crops": int(len(labels)),
    }


def ratios(results: list[dict]) -> list[dict]:
    """Per N, the SGC against the CNN of this same run: ratio and difference per metric."""
    by = {(r["n"], r["model"]): r["test"] for r in results}
    out = []
    for n in sorted({r["n"] for r in results}):
        sgc, cnn = by.get((n, "sgc")), by.get((n, "cnn"))
        if sgc is None or cnn is None:
            continue
        row: dict = {"n": n}
        for m in METRICS:
            row[f"{m}_ratio"] = sgc[m] / cnn[m] if sgc[m] is not None and cnn[m] else None
            row[f"{m}_difference"] = minus(sgc[m], cnn[m])
        out.append(row)
    return out


def minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def shift_summary(results: list[dict], held_out: str) -> dict:
    """The largest N's models (full by default) on base vs held-out style test crops."""
    n = max(r["n"] for r in results)
    out: dict = {"held_out": held_out, "n": n}
    for r in results:
        if r["n"] != n:
            continue
        base, held = r["test"], r["test_held"]
        drop = {m: minus(base[m], held[m]) for m in METRICS}
        out[r["model"]] = {"base": base, "held_out": held, "drop": drop}
    return out


def print_row(r: dict) -> None:
    t = r["test"]
    cells = " ".join(fmt(t[m], 8) for m in METRICS)
    print(
        f"{r['n']:>6} {r['model']:>5} {cells} {r['seconds_train']:>8.0f} {r['seconds_score']:>8.0f}",
        flush=True,
    )


SHORT = dict(zip(METRICS, ("AUC mal", "AUC les", "AUC m/b", "acc"), strict=True))


def print_summary(report: dict) -> None:
    print("\nSGC / CNN on base-style test crops: ratio (difference)", flush=True)
    for row in report["ratios"]:
        cells = "  ".join(
            f"{SHORT[m]} {fmt(row[f'{m}_ratio'], 5)} ({fmt(row[f'{m}_difference'], 6)})"
            for m in METRICS
        )
        print(f"N {row['n']:>6}: {cells}", flush=True)
    shift = report.get("shift")
    if shift:
        print(f"\nshift to style {shift['held_out']!r} (N {shift['n']}): base / held (drop)")
        for model in (m for m in ("sgc", "cnn") if m in shift):
            s = shift[model]
            cells = "  ".join(
                f"{SHORT[m]} {fmt(s['base'][m], 5)} / {fmt(s['held_out'][m], 5)} "
                f"({fmt(s['drop'][m], 6)})"
                for m in AUCS
            )
            print(f"{model:>5}: {cells}", flush=True)
