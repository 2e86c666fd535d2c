"""Train, calibrate, evaluate and export the bundled demo model (sgc_core/models/).

    python -m benchmarks.train_bundled                       # the committed model's recipe
    python -m benchmarks.train_bundled --steps 20000 --device cuda --out /tmp/bigger

Steps, all through the project's own code (docs/model.md):
1. ``sgc_core.synth.write_dataset`` (= ``sgc synth``) writes the synthetic DICOM set
   (seeded; train/val/test by patient) under ``--data``.
2. ``sgc_core.train.train_and_export`` (= the engine of ``sgc train``) trains the score network
   on the train split, fits the temperature, operating point and OOD threshold on the val split
   and writes ``<out>.safetensors`` + ``<out>.json`` (the card records every preprocessing and
   estimator parameter).
3. ``sgc_core.evaluation.evaluate`` scores the untouched test split through the card's own
   preprocessing and writes ``eval/metrics.json``, ``roc.png`` and ``reliability.png``;
   ``eval/report.json`` adds the out-of-distribution check (CT and MR slices from pydicom's
   test files, noise and blank images, all through the same preprocessing) and timings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_OUT = ROOT / "sgc_core" / "models" / "sgc-demo-mammo"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="default: data/bundled-synth-<studies>")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--studies", type=int, default=1000)
    p.add_argument("--difficulty", type=float, default=0.0)
    p.add_argument("--mass-fraction", type=float, default=1.0)
    p.add_argument("--normal-fraction", type=float, default=0.7)
    p.add_argument("--malignant-fraction", type=float, default=0.7)
    p.add_argument("--synth-seed", type=int, default=1)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue the run in <out>.train/")
    p.add_argument(
        "--evaluate-only", action="store_true", help="skip training; re-evaluate the model"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.data is None:
        args.data = ROOT / "data" / f"bundled-synth-{args.studies}"
    import torch

    torch.set_num_threads(args.threads)
    from sgc_core.datasets.mammo import load_synthetic
    from sgc_core.preprocess import PreprocessConfig

    _write_data(args)
    preprocess = PreprocessConfig(image_size=args.image_size, scaling="[0,1]")
    data = load_synthetic(args.data, preprocess)
    train_set, val_set, test_set = (data.subset(s) for s in ("train", "val", "test"))
    description = (
        f"sgc synth --style classic --studies {args.studies} --seed {args.synth_seed} --size small "
        f"--difficulty {args.difficulty:g} --mass-fraction {args.mass_fraction:g} "
        f"--normal-fraction {args.normal_fraction:g} "
        f"--malignant-fraction {args.malignant_fraction:g}; "
        f"train {len(train_set)} / val {len(val_set)} / test {len(test_set)} images"
    )
    if not args.evaluate_only:
        _train(args, train_set, val_set, preprocess.to_dict(), description)
    report = evaluate_bundled(args.out, test_set, args.out.parent / "eval", args.device)
    print(json.dumps(report["summary"], indent=2))
    return 0


def _write_data(args: argparse.Namespace) -> None:
    """Step 1: the synthetic set, unless ``--data`` already holds one (it is seeded, so a
    second run would write the same files)."""
    from sgc_core.synth import write_dataset

    if (args.data / "labels.csv").is_file():
        return
    write_dataset(
        args.data,
        args.studies,
        seed=args.synth_seed,
        size="small",
        difficulty=args.difficulty,
        mass_fraction=args.mass_fraction,
        normal_fraction=args.normal_fraction,
        malignant_fraction=args.malignant_fraction,
        workers=args.workers,
    )


def _train(args: argparse.Namespace, train_set, val_set, preprocess: dict, description: str):
    """Step 2: train on the train split, calibrate on val, export the model and its card."""
    from sgc_core.train import TrainConfig, train_and_export

    config = TrainConfig(
        image_size=args.image_size,
        width=args.width,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        balanced=True,
        checkpoint_every=250,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    train_and_export(
        config,
        train_set,
        args.out,
        val_dataset=val_set,
        name="sgc-demo-mammo",
        version="0.1.0",
        preprocess=preprocess,
        estimator={"k": args.k},
        resume=args.resume,
        progress=True,
        data_description=description,
    )


def evaluate_bundled(model: Path, test_set, out_dir: Path, device: str = "cpu") -> dict:
    """Test-split metrics + plots, the OOD check and timings, written to ``out_dir``.

    Besides the card's metrics, the test AUC is split by what the negative breast holds
    (no lesion vs a benign mass), because the two are very different tasks at 64 px."""
    from benchmarks.ood_inputs import (
        full_size_timings,
        non_mammography_inputs,
        ood_rate,
        time_one_image,
    )
    from sgc_core.evaluation import plot_reliability, plot_roc
    from sgc_core.inference import load_classifier

    clf = load_classifier(model, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, probs, labels, seconds = _test_metrics(clf, test_set)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    pos = clf.card.positive_index
    plot_roc(probs[:, pos], labels == pos, out_dir / "roc.png", f"{clf.card.name}: test split")
    plot_reliability(probs, labels, out_dir / "reliability.png")
    ood = {name: ood_rate(clf, items) for name, items in non_mammography_inputs(clf.card).items()}
    timing = {"small_uncompressed": time_one_image(clf, test_set.items[0].path)}
    timing.update(full_size_timings(clf, ROOT / "data" / "timing"))
    summary = _summary(metrics, ood, timing, seconds)
    report = {"model": metrics["model"], "summary": summary, "test_metrics": metrics}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_json) + "\n")
    return report


def _test_metrics(clf, test_set):
    """(metrics, probabilities, labels, scoring seconds) on the test split, with the node's
    whole OOD rule and the AUC per kind of negative."""
    import numpy as np

    from sgc_core.evaluation import compute_metrics, score_dataset

    t0 = time.perf_counter()
    res = score_dataset(clf, test_set, batch_size=32)
    seconds = time.perf_counter() - t0
    probs_t = clf.posterior(res["scores"])
    probs, labels = probs_t.numpy(), res["labels"].numpy()
    predicted = np.array([clf.classes.index(c) for c in clf.decide(probs_t)])
    metrics = compute_metrics(probs, labels, predicted, clf.classes, clf.card.positive_class)
    metrics.update(_ood_on_test(clf, res, test_set))
    metrics["method"] = clf.estimator.label()
    metrics["model"] = {k: getattr(clf.card, k) for k in ("name", "version", "sha256")}
    findings = np.array([test_set.metadata(i)["finding"] for i in range(len(test_set))])
    metrics.update(_auc_by_negative(findings, probs[:, clf.card.positive_index]))
    return metrics, probs, labels, seconds


def _ood_on_test(clf, res, test_set) -> dict:
    """The node's whole OOD rule on the test mammograms: both bits/dim thresholds and the
    input checks (run on each file through the card's preprocessing, as the worker does)."""
    import numpy as np

    from benchmarks.ood_inputs import preprocess_for
    from sgc_core.preprocess import preprocess_file

    by_density = clf.ood_flags(clf.ood_scores(res["loglik"])).numpy()
    config = preprocess_for(clf.card)
    by_input = np.array(
        [bool(preprocess_file(item.path, config).ood_reasons) for item in test_set.items]
    )
    return {
        "ood_flagged_fraction": float(np.mean(by_density | by_input)),
        "ood_flagged_by_input_checks": int(by_input.sum()),
    }


def _auc_by_negative(findings, positive_probs) -> dict:
    """AUC of malignant against each kind of negative breast (no lesion, a benign lesion)."""
    from sklearn.metrics import roc_auc_score

    malignant = findings == "malignant"
    out = {}
    for negative in ("normal", "benign"):
        keep = malignant | (findings == negative)
        if (findings == negative).any() and malignant.any():
            out[f"auc_malignant_vs_{negative}"] = float(
                roc_auc_score(malignant[keep], positive_probs[keep])
            )
    return out


def _summary(metrics: dict, ood: dict, timing: dict, seconds: float) -> dict:
    """The figures docs/model.md quotes, with the goals they are held to."""
    flagged = sum(r["flagged"] for r in ood.values())
    total = sum(r["n"] for r in ood.values())
    return {
        "test_images": metrics["n"],
        "auc": metrics["auc"],
        "auc_malignant_vs_normal": metrics.get("auc_malignant_vs_normal"),
        "auc_malignant_vs_benign": metrics.get("auc_malignant_vs_benign"),
        "balanced_accuracy": metrics["balanced_accuracy"],
        "sensitivity": metrics["sensitivity"],
        "specificity": metrics["specificity"],
        "ece": metrics["ece"],
        "ood_flagged_on_test_mammograms": metrics["ood_flagged_fraction"],
        "ood_flagged_on_non_mammography": flagged / total,
        "ood_per_kind": ood,
        "seconds_per_image": timing,
        "test_scoring_seconds": round(seconds, 1),
        "goals": {
            "auc>=0.90": bool(metrics["auc"] is not None and metrics["auc"] >= 0.90),
            "ece<=0.05": bool(metrics["ece"] <= 0.05),
            "ood>=0.99 on non-mammography": bool(flagged / total >= 0.99),
            "ood<=0.05 on mammograms": bool(metrics["ood_flagged_fraction"] <= 0.05),
        },
    }


def _json(value):
    return float(value)


if __name__ == "__main__":
    raise SystemExit(main())
