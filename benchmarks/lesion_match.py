"""Each view's findings in the scan's order against the order its partner view supports.

    python -m benchmarks.lesion_match --rows sel.json --card sgc_core/models/sgc-lesion-mammo.json
    python -m benchmarks.lesion_match --rows sel.json --card CARD --write-card OUT --version V

Why: ordering a view's findings by the other projection of its breast
(sgc_core/view_pairs.order_findings) changes no scan and no probability, only which finding
comes first, so it can be judged on recorded rows (``lesion_select --json`` or lesion_eval's
views.json) without scanning again. The rows must carry each finding's distance from the
nipple and each malignant row its per-finding hits (rows recorded since both were added).
Per part it prints the top-finding hit rate on malignant views in the scan's order (by
P(lesion)) and in pair order, how many views moved onto the lesion and off it, the paired
difference with its 5-95 % over resampled patients, and how often the finding on a malignant
lesion is matched in the partner view at its depth. ``--write-card`` writes the card with
``finding_order`` "pair".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from benchmarks.lesion_intervals import paired_intervals
from benchmarks.lesion_pair import load_rows, write_card
from sgc_core.lesion_card import LesionCard
from sgc_core.results import Finding, ViewResult
from sgc_core.view_pairs import order_findings


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=Path, required=True, help="views.json, or lesion_select JSON")
    p.add_argument("--card", type=Path, required=True, help="the model card the rows came from")
    p.add_argument("--write-card", type=Path, help="write the card ordering findings in pairs")
    p.add_argument("--version", default=None, help="the written card's version")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--pool", action="store_true", help="read all the rows' parts as one")
    return p.parse_args(argv)


def as_result(row: dict) -> ViewResult:
    """The row as a view result, findings in the scan's order (laterality and view from the
    synthetic family's ``R_CC.dcm`` file names)."""
    if any(f.get("nipple_distance_mm") is None for f in row["findings"]):
        raise SystemExit(f"{row['patient']}/{row['path']}: findings without a nipple distance")
    side, _, view = Path(row["path"]).stem.partition("_")
    findings = sorted((Finding.from_dict(f) for f in row["findings"]), key=lambda f: -f.p_lesion)
    p = row["p_malignant"]
    return ViewResult(p, "", tuple(findings), None, False, (), 0.0, side, view, (0, 0, 0, 0), "")


def top_hit(row: dict, findings: tuple[Finding, ...]) -> bool | None:
    """Whether the first of ``findings`` is one the row records as hitting its lesion."""
    if row["finding"] != "malignant":
        return None
    if row.get("hits") is None:
        raise SystemExit(f"{row['patient']}/{row['path']}: a malignant row without its hits")
    hit = {tuple(f["centre"]) for f, h in zip(row["findings"], row["hits"], strict=True) if h}
    return bool(findings) and tuple(round(v, 1) for v in findings[0].centre) in hit


def ordered(rows: list[dict], card: LesionCard) -> list[dict]:
    """Rows with ``alone`` and ``pair`` top hits and the first-finding's partner match."""
    results = [as_result(r) for r in rows]
    by_patient: dict = {}
    for r, v in zip(rows, results, strict=True):
        by_patient.setdefault(r["patient"], []).append(v)
    pair_card = card.replace(finding_order="pair")
    out = []
    for r, v in zip(rows, results, strict=True):
        paired = order_findings(v, by_patient[r["patient"]], pair_card)
        out.append(
            dict(
                r,
                alone=top_hit(r, v.findings),
                pair=top_hit(r, paired),
                lesion_matched=lesion_matched(r, paired),
            )
        )
    return out


def lesion_matched(row: dict, findings: tuple[Finding, ...]) -> bool | None:
    """Whether the row's first finding on its lesion is matched in the partner view."""
    if row["finding"] != "malignant" or not any(row["hits"] or ()):
        return None
    first = row["findings"][row["hits"].index(True)]
    return next(f.in_partner_view for f in findings if f.p_lesion == first["p_lesion"])


def report(part: str, rows: list[dict], n: int) -> None:
    mal = [r for r in rows if r["finding"] == "malignant"]
    alone, pair = sum(r["alone"] for r in mal), sum(r["pair"] for r in mal)
    on = sum(r["pair"] and not r["alone"] for r in mal)
    off = sum(r["alone"] and not r["pair"] for r in mal)
    matched = [r["lesion_matched"] for r in mal if r["lesion_matched"] is not None]
    print(f"{part}: {len(rows)} views, {len(mal)} malignant")
    print(f"  top finding on the lesion, scan order {alone}/{len(mal)} = {alone / len(mal):.3f}")
    print(f"  top finding on the lesion, pair order {pair}/{len(mal)} = {pair / len(mal):.3f}")
    print(f"  views moved onto the lesion {on}, off it {off}")
    print(f"  lesion's finding matched in the partner view: {sum(matched)}/{len(matched)}")
    diff = paired_intervals(
        [dict(r, top_hit=r["pair"]) for r in rows], [dict(r, top_hit=r["alone"]) for r in rows], n
    )["top_finding_hit"]
    print(
        f"  pair minus scan order: {diff['value']:+.3f}  5-95 %: {diff['q05']:+.3f} "
        f"{diff['q95']:+.3f}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    card = json.loads(args.card.read_text())
    lesion = LesionCard.from_dict(card["lesion"])
    rows = ordered(load_rows(args.rows), lesion)
    if args.pool:
        rows = [dict(r, part="pooled") for r in rows]
    for part in sorted({r["part"] for r in rows}):
        report(part, [r for r in rows if r["part"] == part], args.resamples)
    if args.write_card:
        ordering = lesion.replace(finding_order="pair")
        write_card(args.write_card, card, args.version, lesion=dataclasses.asdict(ordering))
        print(f"wrote {args.write_card}: findings ordered in pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
