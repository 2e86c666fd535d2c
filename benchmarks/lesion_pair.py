"""Each view alone against each view read with its partner view, from recorded per-view rows.

    python -m benchmarks.lesion_pair --rows sel.json --card sgc_core/models/sgc-lesion-mammo.json
    python -m benchmarks.lesion_pair --rows sel.json --card CARD --write-card OUT.json
    python -m benchmarks.lesion_pair --rows sgc_core/models/eval-lesion/views.json --card CARD

Why: the pair reading (sgc_core/view_pairs.py) changes no scan and no finding, only the
feature a view's P(malignant) is read from, so it can be judged on rows already recorded
(``lesion_select --json`` or ``lesion_eval``'s views.json) without scanning again. Per part it
prints the view AUC malignant vs rest and vs benign lesion and the breast AUC, alone and in
pairs, the paired difference with its 5-95 % over resampled patients, and the pair reading's
ECE. The pair maps are fitted by two folds of patients (each half read by maps fitted on the
other) unless the card already reads in pairs, whose maps are then used as they are.
``--write-card`` fits the pair maps on all the rows and writes the card reading in pairs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from benchmarks.lesion_intervals import auc, paired_intervals, read_rows
from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_fit import fit_maps, pool_exams
from sgc_core.lesion_scan import platt
from sgc_core.results import ViewResult
from sgc_core.view_pairs import OWN, own_feature, pair_feature


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=Path, required=True, help="views.json, or lesion_select JSON")
    p.add_argument("--card", type=Path, required=True, help="the model card the rows came from")
    p.add_argument("--pair-card", type=Path, help="read with this pair card's maps (else 2 folds)")
    p.add_argument("--write-card", type=Path, help="write the card fitted to read in pairs here")
    p.add_argument("--version", default=None, help="the written card's version")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--pool", action="store_true", help="read all the rows' parts as one")
    return p.parse_args(argv)


def load_rows(path: Path) -> list[dict]:
    """Per-view rows of lesion_eval, or of the first model of a lesion_select JSON."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    if isinstance(data, list) and data and isinstance(data[0], dict) and "views" in data[0]:
        return data[0]["views"]
    return read_rows(path)


def own_logit(row: dict, card: dict) -> float | None:
    """The row's top malignant log-odds; older rows kept only P, read back through the map."""
    if row["p_malignant"] is None:
        return None
    if row.get("top_malignant_logit") is not None:
        return float(row["top_malignant_logit"])
    p = min(max(row["p_malignant"], 1e-12), 1 - 1e-12)
    return (math.log(p / (1 - p)) - card["view"]["b"]) / card["view"]["a"]


def with_pairs(rows: list[dict], card: dict) -> list[dict]:
    """Rows with ``own`` and ``pair`` features, read by the node's own pairing code
    (laterality and view from the synthetic family's ``R_CC.dcm`` file names)."""
    results = []
    for r in rows:
        side, _, view = Path(r["path"]).stem.partition("_")
        own = own_logit(r, card)
        results.append(
            ViewResult(
                own if own is None else 0.5,
                "",
                (),
                None,
                False,
                (),
                0.0,
                side,
                view,
                (0, 0, 0, 0),
                "",
                extra={OWN: own},
            )
        )
    by_patient: dict = {}
    for r, v in zip(rows, results, strict=True):
        by_patient.setdefault(r["patient"], []).append(v)
    return [
        dict(
            r, own=own_feature(v), pair=pair_feature(v, by_patient[r["patient"]]), side=v.laterality
        )
        for r, v in zip(rows, results, strict=True)
    ]


def breasts(rows: list[dict], key: str) -> tuple[dict, dict]:
    """(patient, side) -> (max feature, malignant) and patient -> the same, as the exam."""
    return pool_exams(
        (r["patient"], r["side"], r[key], r["finding"] == "malignant")
        for r in rows
        if r[key] is not None
    )


def fitted(rows: list[dict], lesion: dict) -> LesionCard:
    """The lesion card with its maps fitted on ``rows``' pair features."""
    scored = [r for r in rows if r["pair"] is not None]
    feats = np.array([r["pair"] for r in scored])
    mal = np.array([r["finding"] == "malignant" for r in scored])
    per_breast, studies = breasts(scored, "pair")
    card = LesionCard.from_dict(lesion).replace(view_feature="pair")
    return fit_maps(card, feats, mal, per_breast, studies)


def read_pairs(rows: list[dict], lesion: dict, pair: LesionCard | None) -> list[dict]:
    """Rows whose P(malignant) is the pair reading: by the pair card's maps where one is
    given, else by maps fitted on the other half of the patients (two folds)."""
    if pair is not None:
        return [_read(r, pair) for r in rows]
    fold = {p: i % 2 for i, p in enumerate(sorted({r["patient"] for r in rows}))}
    maps = {f: fitted([r for r in rows if fold[r["patient"]] != f], lesion) for f in (0, 1)}
    return [_read(r, maps[fold[r["patient"]]]) for r in rows]


def _read(row: dict, card: LesionCard) -> dict:
    return dict(row, p_malignant=None if row["pair"] is None else platt(card.view, row["pair"]))


def breast_auc(rows: list[dict], key: str) -> float:
    per_breast, _ = breasts(rows, key)
    f, m = (np.array(a) for a in zip(*per_breast.values(), strict=True))
    return auc(m, f)


def report(part: str, rows: list[dict], lesion: dict, pair: LesionCard | None, n: int) -> dict:
    """Print and return one part's alone and pair figures and their paired difference."""
    from benchmarks.lesion_intervals import goal_figures

    paired = read_pairs(rows, lesion, pair)
    alone_fig, pair_fig = goal_figures(rows), goal_figures(paired)
    diff = paired_intervals(paired, rows, n=n)
    out = {"part": part, "views": len(rows), "alone": alone_fig, "pair": pair_fig}
    out["breast_auc"] = {"alone": breast_auc(rows, "own"), "pair": breast_auc(rows, "pair")}
    out["pair_minus_alone"] = diff
    patients = len({r["patient"] for r in rows})
    print(f"{part}: {len(rows)} views, {patients} patients")
    for name, fig in (("alone", alone_fig), ("pair", pair_fig)):
        cells = "  ".join(f"{k} {v:.3f}" for k, v in fig.items())
        print(f"  {name:5s}  {cells}  breast AUC {out['breast_auc'][name]:.3f}")
    for k, s in diff.items():
        print(
            f"  pair minus alone {k:32s} {s['value']:+.3f}  5-95 %: {s['q05']:+.3f} {s['q95']:+.3f}"
        )
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    card = json.loads(args.card.read_text())
    rows = with_pairs(load_rows(args.rows), card["lesion"])
    if args.pool:
        rows = [dict(r, part="pooled") for r in rows]
    pair = None
    if args.pair_card:
        pair = LesionCard.from_dict(json.loads(args.pair_card.read_text())["lesion"])
        if pair.view_feature != "pair":
            raise SystemExit(f"{args.pair_card}: its card does not read views in pairs")
    for part in sorted({r["part"] for r in rows}):
        report(part, [r for r in rows if r["part"] == part], card["lesion"], pair, args.resamples)
    if args.write_card:
        fit = fitted(rows, card["lesion"])
        patients = len({r["patient"] for r in rows})
        calibration = dict(card.get("calibration", {}))
        calibration["pair_maps_fitted_on"] = f"{len(rows)} views of {patients} patients"
        write_card(
            args.write_card, card, args.version, lesion=fit.to_dict(), calibration=calibration
        )
        print(f"wrote {args.write_card}: view map a={fit.view.a:.3f} b={fit.view.b:.3f}")
    return 0


def write_card(path: Path, card: dict, version: str | None, **changes) -> None:
    """``card`` with ``changes`` (and a new ``version``, if given) written to ``path``."""
    out = dict(card, **changes)
    if version:
        out["version"] = version
    path.write_text(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    raise SystemExit(main())
