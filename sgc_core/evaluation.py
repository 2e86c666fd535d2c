"""Metrics and plots of a classifier on a labelled data set (``sgc evaluate``).

Accuracy, balanced accuracy, AUC-ROC (P(positive) vs the rest; one-vs-rest macro for more than
two classes), sensitivity / specificity / F1 at the card's operating point, expected calibration
error (top-label, 15 equal-width bins; Guo et al. 2017) and the confusion matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sgc_core.datasets.base import Dataset


def score_dataset(clf, dataset: Dataset, batch_size: int = 16, progress: bool = False) -> dict:
    """Run the estimator over ``dataset``: scores, log-likelihoods (B, Y) and labels."""
    if len(dataset) == 0:
        raise ValueError("the evaluation set is empty")
    if list(dataset.class_names) != list(clf.classes):
        raise ValueError(
            f"data set classes {dataset.class_names} differ from the model's {clf.classes}"
        )
    scores, logliks, labels = [], [], []
    rng = range(0, len(dataset), batch_size)
    if progress:
        from tqdm.auto import tqdm

        rng = tqdm(rng, desc="score", unit="batch")
    for s in rng:
        items = [dataset[i] for i in range(s, min(s + batch_size, len(dataset)))]
        x = clf.validate(torch.stack([im for im, _ in items]))
        sc, ll = clf.estimate(x)
        scores.append(sc)
        logliks.append(ll)
        labels += [lab for _, lab in items]
    return {
        "scores": torch.cat(scores),
        "loglik": torch.cat(logliks),
        "labels": torch.tensor(labels),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def compute_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    class_names: list[str],
    positive_class: str | None,
) -> dict:
    """All metrics from posterior probabilities, true and predicted label indices."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score

    y = len(class_names)
    out: dict = {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "ece": expected_calibration_error(probs, labels),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=list(range(y))).tolist(),
        "class_names": class_names,
    }
    pos = class_names.index(positive_class) if positive_class in class_names else y - 1
    is_pos = labels == pos
    pred_pos = predicted == pos
    auc = None
    if is_pos.any() and (~is_pos).any():
        if y == 2:
            auc = float(roc_auc_score(is_pos, probs[:, pos]))
        elif len(np.unique(labels)) == y:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr"))
    out["auc"] = auc
    out["positive_class"] = class_names[pos]
    out["sensitivity"] = float(pred_pos[is_pos].mean()) if is_pos.any() else None
    out["specificity"] = float((~pred_pos)[~is_pos].mean()) if (~is_pos).any() else None
    out["f1"] = float(f1_score(is_pos, pred_pos, zero_division=0.0))
    return out


def plot_roc(p_pos: np.ndarray, is_pos: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if is_pos.any() and (~is_pos).any():
        fpr, tpr, _ = roc_curve(is_pos, p_pos)
        ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(is_pos, p_pos):.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(probs: np.ndarray, labels: np.ndarray, path: Path, bins: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    centres, accs = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            centres.append(conf[m].mean())
            accs.append(correct[m].mean())
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot(centres, accs, "o-", label=f"ECE {expected_calibration_error(probs, labels):.3f}")
    ax.set(xlabel="confidence", ylabel="accuracy", title="reliability", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(
    clf,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> dict:
    """Metrics of ``clf`` on ``dataset``; with ``out_dir`` writes metrics.json, roc.png, reliability.png."""
    res = score_dataset(clf, dataset, batch_size, progress)
    probs_t = clf.posterior(res["scores"])
    probs = probs_t.numpy()
    labels = res["labels"].numpy()
    predicted = np.array([clf.classes.index(c) for c in clf.decide(probs_t)])
    metrics = compute_metrics(probs, labels, predicted, clf.classes, clf.card.positive_class)
    ood = clf.ood_scores(res["loglik"]).numpy()
    thr = clf.card.ood.high
    metrics["ood_flagged_fraction"] = (
        float(clf.ood_flags(torch.from_numpy(ood)).double().mean()) if thr is not None else None
    )
    metrics["mean_bits_per_dim"] = float(np.mean(ood))
    metrics["method"] = clf.estimator.label()
    metrics["model"] = {
        "name": clf.card.name,
        "version": clf.card.version,
        "sha256": clf.card.sha256,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        pos = clf.classes.index(metrics["positive_class"])
        plot_roc(
            probs[:, pos],
            labels == pos,
            out / "roc.png",
            f"{clf.card.name}: {metrics['positive_class']}",
        )
        plot_reliability(probs, labels, out / "reliability.png")
    return metrics
