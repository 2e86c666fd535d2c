"""Where a finder's findings land, run against run, in the order the bundled card reports them.

    python -m benchmarks.lesion_select --data DRAW --views 240 --split val --split train \\
        --model sgc_core/models/sgc-lesion-mammo --scan locate_sigma=2 --json sel.json
    python -m benchmarks.lesion_locate --rows sel.json --card sgc_core/models/sgc-lesion-mammo.json
    python -m benchmarks.lesion_locate --rows sel.json --card CARD --write-card OUT --version V \\
        --locate-sigma 2
    python -m benchmarks.lesion_locate --rows OLD/views.json --rows NEW/views.json --part test \\
        --card CARD

Why: a change to where the finder places its findings (the card's ``locate_sigma``) changes
no probability, so AUC, ECE and OOD stay as they are; what it changes is which finding lands
on the lesion, and which nearby candidates merge. This script reads each run's rows in the
scan's order (by P(lesion)) and in the partner view's order that the bundled card reports
(sgc_core/view_pairs.order_findings) and prints, per run, the top-finding hit rate on malignant views in both
orders, the findings per view, and how far the first finding on the lesion lies from the
lesion's centre in lesion radii (median). Each later run follows as its difference from the
first in pair order, with the 5-95 % over resampled patients. Two evaluations' views.json
(lesion_eval) compare the same way, one part at a time. ``--write-card`` writes the
card with the given ``locate_sigma`` (and ``--locate-reach``, how far from the coarse peak the
fine one may lie).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from benchmarks.lesion_intervals import paired_intervals
from benchmarks.lesion_match import ordered
from benchmarks.lesion_pair import write_card
from sgc_core.lesion_card import LesionCard


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--rows",
        type=Path,
        action="append",
        required=True,
        help="a lesion_select JSON, or a lesion_eval views.json; repeatable; later runs are compared with the first",
    )
    p.add_argument("--part", default=None, help="read only the rows of this part (e.g. test)")
    p.add_argument("--card", type=Path, required=True, help="the model card the runs came from")
    p.add_argument("--write-card", type=Path, help="write the card with --locate-sigma")
    p.add_argument("--locate-sigma", type=float, default=None, help="the written card's sigma")
    p.add_argument(
        "--locate-reach",
        type=float,
        default=None,
        help="the written card's reach (scan px; default: the --card's own)",
    )
    p.add_argument("--version", default=None, help="the written card's version")
    p.add_argument("--resamples", type=int, default=2000)
    return p.parse_args(argv)


def load_runs(paths: list[Path]) -> list[dict]:
    """The runs of lesion_select JSONs (each run its rows) and of lesion_eval ``views.json``
    files (one run each, named by its path); a file that is neither is refused in one line.
    One run is summarised alone (and may be written into a card); later runs are compared
    with the first."""
    runs: list[dict] = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
        if isinstance(data, list) and data and all("views" in r for r in data):
            runs += data
        elif isinstance(data, list) and data and all("findings" in r for r in data):
            runs.append({"model": str(path), "views": data})
        else:
            raise SystemExit(f"{path}: neither a lesion_select JSON nor a views.json")
    return runs


def hit_distance(row: dict) -> float | None:
    """The first finding on a malignant row's lesion: its distance from the lesion's centre,
    in lesion radii (None where no finding hits)."""
    if row["finding"] != "malignant" or not any(row["hits"] or ()):
        return None
    f = row["findings"][row["hits"].index(True)]
    r, c, radius = row["lesion"]
    return math.hypot(f["centre"][0] - r, f["centre"][1] - c) / max(radius, 1e-9)


def summary(name: str, rows: list[dict]) -> None:
    mal = [r for r in rows if r["finding"] == "malignant"]
    alone, pair = sum(r["alone"] for r in mal), sum(r["pair"] for r in mal)
    dist = [d for r in mal if (d := hit_distance(r)) is not None]
    per_view = sum(len(r["findings"]) for r in rows) / max(len(rows), 1)
    print(f"{name}: {len(rows)} views, {len(mal)} malignant, {per_view:.2f} findings per view")
    print(f"  top finding on the lesion, scan order {alone}/{len(mal)} = {alone / len(mal):.3f}")
    print(f"  top finding on the lesion, pair order {pair}/{len(mal)} = {pair / len(mal):.3f}")
    print(f"  lesion among the findings {len(dist)}/{len(mal)}", end="")
    print(f"; first hit's distance from its centre, median {statistics.median(dist):.2f} radii")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.write_card and args.locate_sigma is None:
        raise SystemExit("--write-card needs --locate-sigma")
    card = json.loads(args.card.read_text())
    lesion = LesionCard.from_dict(card["lesion"])
    runs = load_runs(args.rows)
    if args.part:
        runs = [
            dict(run, views=[r for r in run["views"] if r["part"] == args.part]) for run in runs
        ]
    runs = [dict(run, views=ordered(run["views"], lesion)) for run in runs]
    for run in runs:
        summary(run["model"], run["views"])
    first = [dict(r, top_hit=r["pair"]) for r in runs[0]["views"]]
    for run in runs[1:]:
        later = [dict(r, top_hit=r["pair"]) for r in run["views"]]
        d = paired_intervals(later, first, args.resamples)["top_finding_hit"]
        print(
            f"{run['model']} minus {runs[0]['model']}, top finding in pair order: "
            f"{d['value']:+.3f}  5-95 % over patients: {d['q05']:+.3f} {d['q95']:+.3f}"
        )
    if args.write_card:
        reach = lesion.locate_reach if args.locate_reach is None else args.locate_reach
        placed = lesion.replace(locate_sigma=args.locate_sigma, locate_reach=reach)
        write_card(args.write_card, card, args.version, lesion=placed.to_dict())
        print(
            f"wrote {args.write_card}: findings placed with locate_sigma {args.locate_sigma}, "
            f"locate_reach {reach}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
