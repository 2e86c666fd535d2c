"""Measure the bundled lesion finder on phantoms from a generator it never trained on.

    python -m benchmarks.lesion_generator --studies 100          # draw, scan, print
    python -m benchmarks.lesion_generator --analyse-only         # print again from the rows

Why: the held-out style (ducts) shares the family's lesion code, breast outline and detector
chain; it measures an unseen texture and header convention, not an unseen generator. The
node is also read on phantoms from generators the project does not have. The nearest thing
here is the ``classic`` style: the generator as it stood before the family (its own 1/f
texture and breast model, its six lesion types drawn by its own code and random stream,
no detector chain). The bundled weights never saw it (they were trained from scratch on
the family; docs/model.md). Two draws, every view of each, seeds never read before:

- ``classic``: MONOCHROME2, 12-bit, as the generator wrote them;
- ``classic-vendor``: the same generator, stored the way the outside phantoms were
  (half the studies MONOCHROME1, 14-bit, JPEG 2000 lossless).

It prints, per draw, the figures of the finder's goals (view AUC malignant vs rest and vs
benign lesion, the top finding on the malignant lesion, FROC, ECE, OOD-flagged share) and,
for comparison, the same figures per training style from the committed evaluation's
views.json (the seed-808 test split). Nothing here is used to choose anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sgc_core/models/sgc-lesion-mammo"
#: name -> (seed, write_dataset options beyond the common ones)
SETS = {
    "classic": (1515, {}),
    "classic-vendor": (1516, {"monochrome": 0.5, "bits_stored": 14, "jpeg2000": True}),
}
COMMON = dict(style="classic", size="medium", difficulty=0.3, normal_fraction=0.25)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "lesion-generator")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--studies", type=int, default=100, help="studies per draw")
    p.add_argument("--set", action="append", choices=tuple(SETS), default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--analyse-only", action="store_true")
    return p.parse_args(argv)


def draw(folder: Path, name: str, studies: int, workers: int) -> Path:
    """One draw, written once (every split: none of it was trained on)."""
    from sgc_core.synth import write_dataset

    seed, extra = SETS[name]
    out = folder / name
    if not (out / "labels.csv").is_file():
        write_dataset(out, studies, seed=seed, workers=workers, **COMMON, **extra)
    return out


def scan(folder: Path, model_path: Path) -> list[dict]:
    """Every view of the draw through the finder, read as lesion_eval reads the test split."""
    from benchmarks.lesion_eval import view_row
    from sgc_core.datasets.crops import read_synthetic_annotations
    from sgc_core.lesion_fit import score_views
    from sgc_core.lesion_scan import LesionScanner
    from sgc_core.view_model import load_view_model

    model = load_view_model(model_path, "cpu")
    card = model.lesion
    open_card = card.replace(finding_threshold=0.0, max_findings=card.refine_top)
    scanner = LesionScanner(model.scanner.model, model.scanner.sde, open_card, "cpu")
    return [view_row(v, "shift") for v in score_views(scanner, read_synthetic_annotations(folder))]


def figures(rows: list[dict]) -> dict:
    """The goal figures of ``rows`` (lesion_eval's view rows: every refined candidate, in the
    card's order, as the committed report counts them)."""
    from sklearn.metrics import roc_auc_score

    from sgc_core.evaluation import expected_calibration_error

    p = np.array([r["p_malignant"] for r in rows])
    mal = np.array([r["finding"] == "malignant" for r in rows])
    lesion = np.array([r["finding"] != "normal" for r in rows])
    hits = [r["hits"] or [] for r in rows if r["finding"] == "malignant"]
    return {
        "views": len(rows),
        "malignant": int(mal.sum()),
        "auc_malignant_vs_rest": float(roc_auc_score(mal, p)),
        "auc_malignant_vs_benign_lesion": float(roc_auc_score(mal[lesion], p[lesion])),
        "top_finding_hit": float(np.mean([bool(h) and h[0] for h in hits])),
        "lesion_among_findings": float(np.mean([any(h) for h in hits])),
        "ece": float(expected_calibration_error(np.stack([1 - p, p], 1), mal.astype(int))),
        "ood_flagged_fraction": float(np.mean([r["ood"] for r in rows])),
    }


def per_style(views_json: Path) -> dict:
    """The committed evaluation's test rows, per style (the in-family reference)."""
    rows = [r for r in json.loads(views_json.read_text()) if r["part"] == "test"]
    return {s: [r for r in rows if r["style"] == s] for s in sorted({r["style"] for r in rows})}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.lesion_by_type import by_type, lesion_types, printed
    from benchmarks.lesion_intervals import intervals

    results, all_rows = {}, {}
    for name in args.set or list(SETS):
        rows_file = args.data / f"{name}-rows.json"
        if not args.analyse_only:
            folder = draw(args.data, name, args.studies, args.workers)
            rows_file.write_text(json.dumps(scan(folder, args.model)) + "\n")
        all_rows[name] = rows = json.loads(rows_file.read_text())
        results[name] = figures(rows)
        print(f"{name}, per lesion type:")
        for line in by_type(rows, lesion_types(args.data / name / "labels.csv")):
            print(printed(line))
    views_json = args.model.parent / "eval-lesion" / "views.json"
    for style, rows in per_style(views_json).items():
        results[f"test:{style}"] = figures(rows)
    _print(results)
    spread = {}
    for name, rows in all_rows.items():
        spread[name] = intervals(rows, n=1000)
        print(f"{name}: 5-95 % over resampled patients: " + _spread(spread[name]))
    results["intervals"] = spread
    (args.data / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _spread(figs: dict) -> str:
    return "; ".join(
        f"{k} {f['value']:.3f} ({f['q05']:.3f}-{f['q95']:.3f})" for k, f in figs.items()
    )


def _print(results: dict) -> None:
    keys = list(next(iter(results.values())))
    print("set".ljust(16) + "".join(k[:14].rjust(16) for k in keys))
    for name, m in results.items():
        print(name.ljust(16) + "".join(f"{m[k]:16.3f}" for k in keys))


if __name__ == "__main__":
    raise SystemExit(main())
