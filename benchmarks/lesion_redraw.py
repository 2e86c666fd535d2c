"""Re-measure the bundled lesion finder on fresh draws of today's phantom generator.

    python -m benchmarks.lesion_redraw --views 60            # draw, scan, print the AUCs
    python -m benchmarks.lesion_redraw --analyse-only         # print again from the saved rows

Why: the committed evaluation (sgc_core/models/eval-lesion) scanned data drawn from the
generator as it stood when the model was trained; the family generator changed afterwards
(docs/model.md). Three fresh, seeded draws, none seen in training or calibration:

- ``select``: the four training styles (seed 101): where any change of the view feature is
  chosen (it plays validation's part);
- ``report``: the four training styles (seed 202): where a chosen change is reported;
- ``held``: the held-out style, ducts (seed 303).

Per view it keeps the scan's raw parts (the coarse pass's malignant log-odds of every window,
the refined candidates' log-odds) and prints, per set, the AUC of malignant vs rest and of
malignant vs benign lesion for the committed view feature (the top refined log-odds) and for
self-normalised alternatives: against the view's own median window (texture level) and
against the same view of the other breast (a reader's left-right comparison).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETS = {"select": (101, "mixed"), "report": (202, "mixed"), "held": (303, "ducts")}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "lesion-redraw")
    p.add_argument("--model", type=Path, default=ROOT / "sgc_core/models/sgc-lesion-mammo")
    p.add_argument("--studies", type=int, default=40, help="studies per set (held: half)")
    p.add_argument("--views", type=int, default=60, help="views scanned per set")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument(
        "--recall-k",
        type=int,
        nargs="*",
        default=[],
        help="also rank the lesion window, per k_coarse",
    )
    return p.parse_args(argv)


def draw(folder: Path, studies: int) -> None:
    """The three sets, written once (medium size, difficulty 0.3, 25 % normal, as trained)."""
    from sgc_core.synth import write_dataset

    for name, (seed, style) in SETS.items():
        n = studies if name != "held" else studies // 2
        if not (folder / name / "labels.csv").is_file():
            write_dataset(
                folder / name,
                n,
                seed=seed,
                style=style,
                size="medium",
                difficulty=0.3,
                normal_fraction=0.25,
                workers=2,
            )


def scan_rows(model_path: Path, folder: Path, views: int) -> None:
    """Scan the first ``views`` views of each set; one JSON row per view, resumable."""
    import pydicom

    from sgc_core.datasets.crops import read_synthetic_annotations
    from sgc_core.denoise_map import window_scores
    from sgc_core.lesion_scan import LesionScanner
    from sgc_core.scan_geometry import scan_dataset
    from sgc_core.view_model import load_view_model

    model = load_view_model(model_path)
    card = model.lesion
    open_card = card.replace(finding_threshold=0.0, max_findings=card.refine_top)
    sc = LesionScanner(model.scanner.model, model.scanner.sde, open_card)
    for name in SETS:
        out = folder / f"rows-{name}.jsonl"
        done = {json.loads(x)["path"] for x in out.open()} if out.exists() else set()
        with out.open("a") as fh:
            for note in read_synthetic_annotations(folder / name)[:views]:
                if note.path not in done:
                    scan = scan_dataset(pydicom.dcmread(note.path), card.spacing_mm)
                    fh.write(json.dumps(_row(sc, card, note, scan, window_scores)) + "\n")
                    fh.flush()


def _row(sc, card, note, scan, window_scores) -> dict:
    from sgc_core.lesion_fit import ScoredView, is_hit

    row = {"path": note.path, "finding": note.finding, "style": note.style}
    if not (scan.breast_found and scan.mask.any()):
        return row
    centres = sc.window_centres(scan)
    err = sc.errors(scan.image, centres, sc.coarse)
    post = sc.posterior(window_scores(err), card.temperature_coarse)
    ranked, err = sc._rank(scan, centres, err)  # as LesionScanner.scan: may rescore windows
    emap = sc._evidence_map(scan, centres, err)
    cands = sc._refine(scan, ranked, emap)
    res = sc._result(scan, cands, emap, 0.0, len(centres))
    p = np.clip(post[:, card.malignant], 1e-12, 1 - 1e-12)
    row.update(
        coarse_mal_logit=np.log(p / (1 - p)).tolist(),
        fine=[c.malignant_logit for c in cands],
        p=res.p_malignant,
        top=res.extra["top_malignant_logit"],
    )
    if note.finding == "malignant":  # does the top finding land on the lesion (lesion_eval's rule)
        view = ScoredView(note, res, scan.spacing_mm / scan.geometry.step[0])
        row["top_hit"] = bool(res.findings) and is_hit(view, res.findings[0].centre)
    return row


def features(rows: list[dict]) -> dict[str, np.ndarray]:
    """The committed view feature and the self-normalised alternatives, per row."""
    by_view = {tuple(r["path"].split("/")[-2:]): r for r in rows}
    out: dict[str, list[float]] = {"top (committed)": [], "top - view median": [], "contra": []}
    out["contra, median-normalised"] = []
    for r in rows:
        med = float(np.median(r["coarse_mal_logit"]))
        study, name = r["path"].split("/")[-2:]
        other = by_view.get((study, ("L" if name[0] == "R" else "R") + name[1:]), r)
        other_med = float(np.median(other["coarse_mal_logit"]))
        out["top (committed)"].append(r["top"])
        out["top - view median"].append(r["top"] - med)
        out["contra"].append(r["top"] - other["top"])
        out["contra, median-normalised"].append((r["top"] - med) - (other["top"] - other_med))
    return {k: np.array(v) for k, v in out.items()}


def report(folder: Path) -> dict:
    """Print and return the AUCs of every feature on every set."""
    from sklearn.metrics import roc_auc_score

    summary = {}
    for name in SETS:
        if not (folder / f"rows-{name}.jsonl").is_file():
            continue
        rows = [json.loads(x) for x in (folder / f"rows-{name}.jsonl").open()]
        rows = [r for r in rows if "top" in r]
        mal = np.array([r["finding"] == "malignant" for r in rows])
        lesion = np.array([r["finding"] != "normal" for r in rows])
        print(f"{name}: {len(rows)} views, {mal.sum()} malignant, {(~lesion).sum()} normal")
        summary[name] = {}
        hits = [r["top_hit"] for r in rows if "top_hit" in r]
        if hits:  # rows written before the field existed have none
            summary[name]["top_finding_hit"] = f"{sum(hits)}/{len(hits)}"
            print(f"  top finding on the malignant lesion: {sum(hits)} of {len(hits)}")
        summary[name]["by_finding"] = by_finding(rows)
        for key, f in features(rows).items():
            auc = float(roc_auc_score(mal, f))
            mb = float(roc_auc_score(mal[lesion], f[lesion]))
            se = _auc_se(auc, int(mal.sum()), int((~mal).sum()))
            summary[name][key] = {"auc": auc, "auc_se": se, "auc_malignant_vs_benign": mb}
            print(f"  {key:28s} AUC {auc:.3f} (se {se:.3f})   malignant vs benign {mb:.3f}")
    return summary


def by_finding(rows: list[dict]) -> dict:
    """Per finding: mean P(malignant), and the medians of the top refined log-odds, of the
    view's most and of its median malignant-looking coarse window.

    Why: a style that reads high can shift the whole texture (the median window rises) or
    put a few lesion-like spots in normal tissue (only the most malignant window rises); a
    texture-level check could see the first, not the second."""
    out = {}
    for finding in ("normal", "benign", "malignant"):
        got = [r for r in rows if r["finding"] == finding]
        if not got:
            continue
        out[finding] = {
            "views": len(got),
            "mean_p": float(np.mean([r["p"] for r in got])),
            "median_top": float(np.median([r["top"] for r in got])),
            "median_window_max": float(np.median([max(r["coarse_mal_logit"]) for r in got])),
            "median_window_median": float(
                np.median([np.median(r["coarse_mal_logit"]) for r in got])
            ),
        }
        row = out[finding]
        print(
            f"  {finding:9s} {len(got):3d} views: mean P {row['mean_p']:.2f}; medians of the top "
            f"refined log-odds {row['median_top']:+.2f}, of the most malignant coarse window "
            f"{row['median_window_max']:+.2f}, of the median window {row['median_window_median']:+.2f}"
        )
    return out


def _auc_se(a: float, n_pos: int, n_neg: int) -> float:
    """Hanley and McNeil's standard error of an AUC."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def recall_rows(model_path: Path, folder: Path, views: int, k_coarse: int) -> None:
    """Where the coarse pass ranks the lesion's window, on the lesion views of ``select``.

    Why: a view's score is its refined top 3 windows; a lesion outside them cannot count.
    Per lesion view: the rank of the best window holding the lesion centre in the refine
    order (least normal first), and the malignant log-odds there (does the window that holds
    the lesion tell malignant from benign?).
    """
    import pydicom

    from sgc_core.datasets.crops import read_synthetic_annotations
    from sgc_core.denoise_map import window_scores
    from sgc_core.lesion_scan import LesionScanner
    from sgc_core.scan_geometry import scan_dataset
    from sgc_core.view_model import load_view_model

    model = load_view_model(model_path)
    card = model.lesion.replace(k_coarse=k_coarse)
    sc = LesionScanner(model.scanner.model, model.scanner.sde, card)
    notes = read_synthetic_annotations(folder / "select")[:views]
    with (folder / f"recall-select-k{k_coarse}.jsonl").open("w") as fh:
        for note in (n for n in notes if n.finding != "normal"):
            scan = scan_dataset(pydicom.dcmread(note.path), card.spacing_mm)
            if scan.breast_found:
                fh.write(json.dumps(_recall_row(sc, card, note, scan, window_scores)) + "\n")


def _recall_row(sc, card, note, scan, window_scores) -> dict:
    centres = sc.window_centres(scan)
    post = sc.posterior(
        window_scores(sc.errors(scan.image, centres, sc.coarse)), card.temperature_coarse
    )
    sr, scc = scan.geometry.to_scan(np.array([note.row]), np.array([note.col]))
    near = np.hypot(centres[:, 0] - sr[0], centres[:, 1] - scc[0]) <= card.crop / 2
    ranked = near[np.argsort(post[:, 0])]
    p = np.clip(post[:, card.malignant], 1e-12, 1 - 1e-12)
    logit = np.log(p / (1 - p))
    return {
        "finding": note.finding,
        "windows": len(centres),
        "rank": int(np.flatnonzero(ranked)[0]) if near.any() else -1,
        "lesion_mal_logit": float(logit[near].max()) if near.any() else None,
    }


def recall_report(folder: Path) -> None:
    """Print the lesion window's rank and its malignant-vs-benign AUC per k_coarse."""
    from sklearn.metrics import roc_auc_score

    for path in sorted(folder.glob("recall-select-k*.jsonl")):
        rows = [json.loads(x) for x in path.open()]
        rank = np.array([r["rank"] for r in rows])
        mal = np.array([r["finding"] == "malignant" for r in rows])
        logit = np.array([r["lesion_mal_logit"] for r in rows], dtype=float)
        print(
            f"{path.stem}: {len(rows)} lesion views; lesion window in the refined top 3: "
            f"{np.mean((rank >= 0) & (rank < 3)):.2f}, first: {np.mean(rank == 0):.2f}, median "
            f"rank {np.median(rank):.0f} of {np.median([r['windows'] for r in rows]):.0f} windows; "
            f"malignant vs benign AUC of the lesion window's log-odds {roc_auc_score(mal, logit):.3f}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.analyse_only:
        import torch

        torch.set_num_threads(1)
        draw(args.data, args.studies)
        scan_rows(args.model, args.data, args.views)
        for k in args.recall_k:
            recall_rows(args.model, args.data, args.views, k)
    summary = report(args.data)
    recall_report(args.data)
    (args.data / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
