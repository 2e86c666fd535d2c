"""Why a malignant lesion is among no finding: the search, or the window classifier?

    python -m benchmarks.lesion_miss --studies 60        # draw, scan, print
    python -m benchmarks.lesion_miss --analyse-only      # print again from the rows
    python -m benchmarks.lesion_miss --data D --seeds 2323,2324 --model M --rows D/m  # other draws, another model
    python -m benchmarks.lesion_miss --compare D/m D/n   # two models on one draw, paired

Why: on the test split the finder's misses are mostly linear lesions (architectural
distortions, fine-linear calcification clusters) on textures with linear structure
(ligament, strands; docs/benchmarks.md). Two causes call for different work: the coarse
pass may never refine the lesion's window (a search problem: the scan could look longer),
or the window centred on the lesion may itself read less lesion-like than the false finding
(a classifier problem: only training helps). Per malignant view of fresh draws of those two
styles (seeds no choice has read; medium size, difficulty 0.3, 25 % normal, as trained), it
scans the view as the evaluation does, then scores one more window centred on the true
lesion with the fine pass's (t, eps) and temperature, and prints, for views whose lesion is
among no finding, how often that window's P(lesion) reaches the first finding's.
Nothing here is used to choose anything.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sgc_core/models/sgc-lesion-mammo"
STYLES = ("ligament", "strands")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "lesion-miss")
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--studies", type=int, default=60, help="studies per style")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument(
        "--seeds",
        default="1717,1718",
        help="the ligament and strands draws' seeds (the recorded run's by default)",
    )
    p.add_argument(
        "--rows",
        type=Path,
        default=None,
        help="where the rows and summary go (default --data): several models, one draw",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("ROWS_A", "ROWS_B"),
        help="two --rows folders of one draw: the views only one model finds, and a sign test",
    )
    args = p.parse_args(argv)
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds {args.seeds!r}: two integers, e.g. 1717,1718")
    if len(seeds) != len(STYLES) or min(seeds) < 0:
        p.error(f"--seeds {args.seeds!r}: two seeds >= 0, one per style {list(STYLES)}")
    args.sets = dict(zip(STYLES, seeds, strict=True))
    args.rows = args.rows or args.data
    return args


def check_draw(folder: Path, seed: int, studies: int) -> None:
    """Refuse a folder drawn with another seed or size: it would be read as the asked-for one."""
    made = json.loads((folder / "synth.json").read_text())
    if (made["seed"], made["n_studies"]) != (seed, studies):
        raise SystemExit(
            f"{folder} holds seed {made['seed']}, {made['n_studies']} studies; asked for seed "
            f"{seed}, {studies} studies: give another --data"
        )


def linear(row: dict) -> bool:
    """A lesion drawn as lines: an architectural distortion or a branching cluster."""
    return row["lesion_type"] == "distortion" or row["lesion_variant"] == "branching"


def scan_rows(folder: Path, model_path: Path) -> list[dict]:
    """One row per malignant view: where its findings lie and how its own window reads."""
    import pydicom

    from sgc_core.datasets.crops import read_synthetic_annotations
    from sgc_core.lesion_fit import is_hit, score_views
    from sgc_core.lesion_scan import LesionScanner
    from sgc_core.scan_geometry import scan_dataset
    from sgc_core.view_model import load_view_model

    model = load_view_model(model_path, "cpu")
    card = model.lesion
    open_card = card.replace(finding_threshold=0.0, max_findings=card.refine_top)
    sc = LesionScanner(model.scanner.model, model.scanner.sde, open_card, "cpu")
    with (folder / "labels.csv").open(newline="") as fh:
        truth = {r["path"]: r for r in csv.DictReader(fh)}
    rows = []
    # Only malignant views: a malignant breast's other projection holds the lesion too, so
    # every view is still read with its partner, as the card says.
    malignant = [n for n in read_synthetic_annotations(folder) if n.finding == "malignant"]
    for v in score_views(sc, malignant):
        if not v.result.findings:
            continue
        scan = scan_dataset(pydicom.dcmread(v.note.path), card.spacing_mm)
        t = truth[str(Path(v.note.path).relative_to(folder))]
        first = v.result.findings[0]
        rows.append(
            {
                "linear": linear(t),
                "type": t["lesion_type"]
                + (f":{t['lesion_variant']}" if t["lesion_variant"] else ""),
                "hits": [bool(is_hit(v, f.centre)) for f in v.result.findings],
                "first_p_lesion": first.p_lesion,
                "first_p_malignant": first.p_malignant,
                **lesion_window(sc, scan, v.note),
            }
        )
    return rows


def lesion_window(sc, scan, note) -> dict:
    """The fine pass's posterior of the window centred on the true lesion."""
    from sgc_core.denoise_map import window_scores

    r, c = scan.geometry.to_scan(np.array([note.row]), np.array([note.col]))
    err = sc.errors(scan.image, np.array([[r[0], c[0]]]), sc.fine)
    post = sc.posterior(window_scores(err), sc.card.temperature_fine)[0]
    return {
        "lesion_p_lesion": float(1 - post[0]),
        "lesion_p_malignant": float(post[sc.card.malignant]),
    }


def summary(rows: list[dict]) -> dict:
    """Per group (linear lesion or not): views, lesion among no finding, and of those the
    share whose own window reads at least as lesion-like as the first finding."""
    out = {}
    for name, group in (("linear", True), ("other", False)):
        g = [r for r in rows if r["linear"] is group]
        missed = [r for r in g if not any(r["hits"])]
        reaches = [r["lesion_p_lesion"] >= r["first_p_lesion"] for r in missed]
        out[name] = {
            "malignant_views": len(g),
            "top_finding_hits": sum(bool(r["hits"]) and r["hits"][0] for r in g),
            "among_no_finding": len(missed),
            "own_window_reaches_first_finding": int(sum(reaches)),
            "own_window_p_lesion_median_missed": _median([r["lesion_p_lesion"] for r in missed]),
            "own_window_p_lesion_median_found": _median(
                [r["lesion_p_lesion"] for r in g if any(r["hits"])]
            ),
            "first_finding_p_lesion_median_missed": _median([r["first_p_lesion"] for r in missed]),
        }
    return out


def paired(a: list[dict], b: list[dict]) -> dict:
    """Per group, the views where only one of two models has the lesion among its findings
    (and first), with the exact two-sided sign test on those views (McNemar's). Why: both
    models read the same views, so the views they disagree on carry the difference; two
    counts side by side hide that pairing."""
    from scipy.stats import binomtest

    if [r["type"] for r in a] != [r["type"] for r in b]:
        raise SystemExit("the two row sets are not of the same views (another draw?)")
    out = {}
    for name, group in (("linear", True), ("other", False)):
        pairs = [(x, y) for x, y in zip(a, b, strict=True) if x["linear"] is group]
        out[name] = {"malignant_views": len(pairs)}
        for what, hit in (("among", any), ("top", lambda h: bool(h) and h[0])):
            only_a = sum(hit(x["hits"]) and not hit(y["hits"]) for x, y in pairs)
            only_b = sum(hit(y["hits"]) and not hit(x["hits"]) for x, y in pairs)
            p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
            out[name][what] = {"only_a": only_a, "only_b": only_b, "sign_test_p": float(p)}
    return out


def compare(folders: list[Path]) -> dict:
    """``paired`` of two --rows folders, both styles together."""
    rows = []
    for folder in folders:
        files = [folder / f"{s}-rows.json" for s in STYLES]
        if not all(f.is_file() for f in files):
            raise SystemExit(f"{folder}: no rows of {list(STYLES)}")
        rows.append([r for f in files for r in json.loads(f.read_text())])
    return paired(*rows)


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from sgc_core.synth import write_dataset

    if args.compare:
        print(json.dumps(compare(args.compare), indent=2))
        return 0

    results, rows = {}, {}
    for style, seed in args.sets.items():
        folder = args.data / style
        rows_file = args.rows / f"{style}-rows.json"
        if not args.analyse_only:
            if not (folder / "labels.csv").is_file():
                opts = dict(size="medium", difficulty=0.3, normal_fraction=0.25, workers=2)
                write_dataset(folder, args.studies, seed=seed, style=style, **opts)
            check_draw(folder, seed, args.studies)
            args.rows.mkdir(parents=True, exist_ok=True)
            rows_file.write_text(json.dumps(scan_rows(folder, args.model)) + "\n")
        if not rows_file.is_file():
            raise SystemExit(f"{rows_file}: no rows (run without --analyse-only first)")
        rows[style] = json.loads(rows_file.read_text())
        results[style] = summary(rows[style])
    results["both"] = summary([r for s in STYLES for r in rows[s]])
    print(json.dumps(results, indent=2))
    (args.rows / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
