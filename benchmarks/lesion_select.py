"""Choose between lesion finders on validation views, never on test.

    python -m benchmarks.lesion_select --data data/lesion-synth/family --views 80 \\
        --model sgc_core/models/sgc-lesion-mammo --model /tmp/next/sgc-lesion-mammo

Why: a new recipe (more steps, hard negatives) must earn its place on data that is not the
test split; the test split and the fresh draws (benchmarks/lesion_redraw.py) then only report.
Each model scans the same first ``--views`` validation views of a ``sgc synth`` family with
its card's open settings (every refined candidate kept), and the script prints per model the
per-view AUC of malignant vs rest and of malignant vs benign lesion, the fraction of
malignant lesions hit by the top finding, FROC sensitivity and the calibration error of the
card's P(malignant) per view and the fraction of views flagged out of distribution: the quantities the finder's goals name, on validation.
With more than one run, each later run's difference from the first on the same views follows,
with its 5-95 % over resampled patients (benchmarks/lesion_intervals.py); the JSON keeps the
per-view rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

KEYS = (
    "auc_malignant_vs_rest",
    "auc_malignant_vs_benign_lesion",
    "top_finding_hit",
    "froc_sens_at_1_fp",
    "ece",
    "ood_flagged_fraction",
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a `sgc synth` family folder")
    p.add_argument("--model", type=Path, action="append", required=True, help="repeatable")
    p.add_argument("--views", type=int, default=80, help="first N views of --split (0 = all)")
    p.add_argument(
        "--split",
        action="append",
        choices=("val", "train"),
        default=None,
        help="the draw's split(s) to read, each its first --views (default val; train only "
        "of a draw the models never trained on); repeatable",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument(
        "--scan",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also scan with this card setting changed (e.g. min_breast_fraction=0.75, or "
        "several: middle_windows=16,k_fine=16); repeatable, each a row of its own",
    )
    return p.parse_args(argv)


def validation_metrics(model_path: Path, notes, change: str = "") -> dict:
    """Scan ``notes`` with the model's open card (``KEY=VALUE[,KEY=VALUE]`` scan settings
    changed, if given: the weights stay, so a scan choice is made on validation like a
    model's); the per-view metrics of lesion_eval."""
    from benchmarks.lesion_eval import view_metrics, view_row
    from sgc_core.lesion_fit import score_views
    from sgc_core.lesion_scan import LesionScanner
    from sgc_core.view_model import load_view_model

    model = load_view_model(model_path)
    card = model.lesion
    open_card = card.replace(finding_threshold=0.0, max_findings=card.refine_top)
    if change:
        open_card = open_card.with_settings(change.split(","))
    scanner = LesionScanner(model.scanner.model, model.scanner.sde, open_card)
    t0 = time.perf_counter()
    scored = score_views(scanner, notes)
    out = {k: v for k, v in view_metrics(scored, card).items() if k in KEYS}
    ident = model.identity
    name = f"{ident.name} {ident.version}" + (f" [{change}]" if change else "")
    out.update(model=name, sha256=ident.sha256[:16], path=str(model_path))
    out["seconds_per_view"] = round((time.perf_counter() - t0) / max(1, len(notes)), 2)
    out["views"] = [view_row(v, v.note.split) for v in scored]
    return out


def print_paired(rows: list[dict], resamples: int = 2000) -> None:
    """Each later run minus the first on the same views, patients resampled (5-95 %): the
    margin a choice between close finders has to be read against."""
    from benchmarks.lesion_intervals import paired_intervals

    for row in rows[1:]:
        table = paired_intervals(row["views"], rows[0]["views"], n=resamples)
        cells = "  ".join(
            f"{k} {s['value']:+.3f} ({s['q05']:+.3f} to {s['q95']:+.3f})" for k, s in table.items()
        )
        print(f"{row['model']} minus {rows[0]['model']}, 5-95 % over patients: {cells}")


def check_scan_changes(changes: list[str]) -> None:
    """Refuse a --scan that names no scalar card setting, in one line, before any scan."""
    from sgc_core.lesion_card import LesionCard

    try:
        LesionCard().with_settings([c for change in changes for c in change.split(",")])
    except ValueError as exc:
        raise SystemExit(f"--scan {exc}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    check_scan_changes(args.scan)
    import torch

    from sgc_core.datasets.crops import read_synthetic_annotations

    torch.set_num_threads(args.threads)
    notes = read_synthetic_annotations(args.data)
    val = []
    for split in args.split or ["val"]:
        part = [n for n in notes if n.split == split]
        val += part[: args.views] if args.views else part
    malignant = sum(n.finding == "malignant" for n in val)
    where = "+".join(args.split or ["val"])
    print(f"# {len(val)} {where} views of {args.data} ({malignant} malignant)", flush=True)
    rows = []
    runs = [(path, change) for path in args.model for change in ["", *args.scan]]
    for path, change in runs:
        row = validation_metrics(path, val, change)
        rows.append(row)
        cells = "  ".join(f"{k} {row[k]:.3f}" if row.get(k) is not None else f"{k} -" for k in KEYS)
        print(f"{row['model']} ({row['sha256']}): {cells}  {row['seconds_per_view']} s/view")
    print_paired(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
