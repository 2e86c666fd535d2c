"""Measure a lesion finder on the test split and the held-out style (never used for a choice).

    python -m benchmarks.lesion_eval --refresh-ood   # re-measure a report's OOD inputs only

Per view: AUC malignant vs rest and malignant vs benign-lesion views, ECE, sensitivity and
specificity at the card's operating point; per breast and study: AUC; localisation: the top
finding's hit rate on malignant lesions and FROC sensitivity at 0.5 / 1 / 2 false findings per
view; OOD: the flagged fraction of in-family test views and of non-mammography inputs
(benchmarks/ood_inputs.py: the card's band saw none of them; the goal is read on the kinds
no input-check threshold was chosen on, ``CHOSEN_ON`` left out); time per view and per 4-view
study on this machine. The raw per-view rows are written beside the summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

_MODEL = Path(__file__).resolve().parents[1] / "sgc_core/models/sgc-lesion-mammo"


def _auc(y, s) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=bool)
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def view_metrics(views, card) -> dict:
    """Per-view and exam metrics of scored views (``lesion_fit.ScoredView``)."""
    from sgc_core.evaluation import expected_calibration_error
    from sgc_core.lesion_fit import exam_features, localisation
    from sgc_core.lesion_scan import platt

    scored = [v for v in views if v.result.p_malignant is not None]
    p = np.array([v.result.p_malignant for v in scored])
    finding = np.array([v.note.finding for v in scored])
    mal = finding == "malignant"
    lesion = finding != "normal"
    probs2 = np.stack([1 - p, p], 1)
    breasts, studies = exam_features(scored)
    bf, bm = (np.array(a) for a in zip(*breasts.values(), strict=True))
    sf, sm = (np.array(a) for a in zip(*studies.values(), strict=True))
    out = {
        "views": len(views),
        "unscored_views": len(views) - len(scored),
        "auc_malignant_vs_rest": _auc(mal, p),
        "auc_malignant_vs_benign_lesion": _auc(mal[lesion], p[lesion]),
        "auc_malignant_vs_normal": _auc(mal[mal | ~lesion], p[mal | ~lesion]),
        "ece": float(expected_calibration_error(probs2, mal.astype(int))),
        "sensitivity": float((p[mal] >= card.operating_point).mean()) if mal.any() else None,
        "specificity": float((p[~mal] < card.operating_point).mean()) if (~mal).any() else None,
        "auc_breast": _auc(bm, bf),
        "auc_study": _auc(sm, sf),
        "ece_study": float(
            expected_calibration_error(
                np.stack([1 - (q := np.array([platt(card.study, f) for f in sf])), q], 1),
                sm.astype(int),
            )
        ),
        "ood_flagged_fraction": float(np.mean([v.result.ood for v in views])),
    }
    out.update(localisation(scored))
    return out


def ood_inputs_rate(model) -> dict:
    from benchmarks.ood_inputs import non_mammography_inputs

    per_kind = {}
    for kind, datasets in non_mammography_inputs(model.card).items():
        results = model.classify(datasets)
        flagged = sum(isinstance(r, str) or r.ood for r in results)
        per_kind[kind] = {"n": len(datasets), "flagged": int(flagged)}
    return per_kind


def ood_fraction(per_kind: dict, leave_out: tuple[str, ...] = ()) -> float:
    """The flagged share of the inputs of ``ood_inputs_rate``'s kinds, ``leave_out`` left out."""
    kept = [k for name, k in per_kind.items() if name not in leave_out]
    return sum(k["flagged"] for k in kept) / max(1, sum(k["n"] for k in kept))


def study_timing(model, notes, studies: int = 3) -> dict:
    """Seconds per view and per 4-view study (file read included), first studies of ``notes``."""
    import pydicom

    by_study: dict[str, list] = {}
    for n in notes:
        by_study.setdefault(n.patient_id, []).append(n.path)
    times = []
    for paths in list(by_study.values())[:studies]:
        t0 = time.perf_counter()
        model.classify([pydicom.dcmread(p) for p in paths])
        times.append((time.perf_counter() - t0, len(paths)))
    per_study = float(np.median([t for t, _ in times]))
    return {"seconds_per_study": per_study, "seconds_per_view": per_study / times[0][1]}


def evaluate_model(args, model_path: Path, notes, held_notes, out_dir: Path) -> dict:
    from benchmarks.ood_inputs import CHOSEN_ON
    from sgc_core.lesion_fit import score_views
    from sgc_core.view_model import load_view_model

    model = load_view_model(model_path, args.device)
    card = model.lesion
    open_card = card.replace(finding_threshold=0.0, max_findings=card.refine_top)
    from sgc_core.lesion_scan import LesionScanner

    scanner = LesionScanner(model.scanner.model, model.scanner.sde, open_card, args.device)
    test = [n for n in notes if n.split == "test"]
    if args.test_views:
        test = test[: args.test_views]
    t0 = time.perf_counter()
    scored = score_views(scanner, test)
    held = score_views(
        scanner, held_notes[: args.held_out_views] if args.held_out_views else held_notes
    )
    seconds = time.perf_counter() - t0
    ood = ood_inputs_rate(model)
    flagged, unseen = ood_fraction(ood), ood_fraction(ood, leave_out=CHOSEN_ON)
    test_m, held_m = view_metrics(scored, card), view_metrics(held, card)
    summary = {
        "test": test_m,
        "held_out_style": held_m,
        "ood_flagged_on_non_mammography": flagged,
        "ood_flagged_on_non_mammography_not_chosen_on": unseen,
        "ood_per_kind": ood,
        "timing": study_timing(model, test),
        "scoring_seconds": round(seconds, 1),
        "goals": _goals(test_m, unseen),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [view_row(v, "test") for v in scored] + [view_row(v, "held-out") for v in held]
    summary["intervals"] = _intervals(rows)
    (out_dir / "views.json").write_text(json.dumps(rows) + "\n")
    report = {
        "model": {k: getattr(model.card, k) for k in ("name", "version", "sha256")},
        "summary": summary,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _goals(m: dict, ood_non_mammo: float) -> dict:
    def at_least(key, goal):
        return m.get(key) is not None and m[key] >= goal

    return {
        "auc_malignant_vs_rest>=0.95": at_least("auc_malignant_vs_rest", 0.95),
        "auc_malignant_vs_benign>=0.85": at_least("auc_malignant_vs_benign_lesion", 0.85),
        "top_finding_hit>=0.90": at_least("top_finding_hit", 0.90),
        "ece<=0.05": m["ece"] <= 0.05,
        "ood<=0.05 on in-family views": m["ood_flagged_fraction"] <= 0.05,
        "ood>=0.99 on non-mammography not chosen on": ood_non_mammo >= 0.99,
    }


def _intervals(rows: list[dict]) -> dict:
    """Patient-resampled 5 / 50 / 95 % of the goal figures, per part (lesion_intervals)."""
    from benchmarks.lesion_intervals import intervals

    return {
        part: intervals([r for r in rows if r["part"] == part]) for part in ("test", "held-out")
    }


def view_row(v, part: str) -> dict:
    from sgc_core.lesion_fit import is_hit

    r = v.result
    malignant = v.note.finding == "malignant"
    return {
        "part": part,
        "path": str(Path(v.note.path).name),
        "patient": v.note.patient_id,
        "style": v.note.style,
        "finding": v.note.finding,
        "lesion": [v.note.row, v.note.col, v.note.radius],
        "p_malignant": r.p_malignant,
        "top_malignant_logit": r.extra.get("top_malignant_logit"),
        "ood": r.ood,
        "ood_score": r.ood_score,
        "findings": [f.to_dict() for f in r.findings],
        "top_hit": bool(r.findings) and is_hit(v, r.findings[0].centre) if malignant else None,
        "hits": [is_hit(v, f.centre) for f in r.findings] if malignant else None,
    }


def refresh_ood(model_path: Path, report_path: Path) -> dict:
    """Re-measure a committed report's non-mammography OOD figures and goal, nothing else.

    Why: the input checks grow (placement, shape) while the weights and maps stay; the views'
    own figures are re-counted by benchmarks/input_recount.py, and re-scanning every view
    (about an hour here) would reproduce them to the digit. The report says when and how its
    OOD part was refreshed (``ood_refreshed``)."""
    from benchmarks.ood_inputs import CHOSEN_ON
    from sgc_core.view_model import load_view_model

    report = json.loads(report_path.read_text())
    model = load_view_model(model_path, "cpu")
    if model.card.sha256 != report["model"]["sha256"]:
        raise SystemExit(f"{report_path} is another model's report (sha256 differs)")
    s = with_ood(report["summary"], ood_inputs_rate(model))
    s["ood_refreshed"] = {
        "date": time.strftime("%Y-%m-%d"),
        "by": "python -m benchmarks.lesion_eval --refresh-ood",
        "left_out_as_chosen_on": list(CHOSEN_ON),
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return s


def with_ood(summary: dict, per_kind: dict) -> dict:
    """``summary`` with its non-mammography OOD figures and goals read from ``per_kind``."""
    from benchmarks.ood_inputs import CHOSEN_ON

    summary["ood_per_kind"] = per_kind
    summary["ood_flagged_on_non_mammography"] = ood_fraction(per_kind)
    unseen = ood_fraction(per_kind, CHOSEN_ON)
    summary["ood_flagged_on_non_mammography_not_chosen_on"] = unseen
    summary["goals"] = _goals(summary["test"], unseen)
    return summary


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=refresh_ood.__doc__)
    p.add_argument("--refresh-ood", action="store_true", required=True)
    p.add_argument("--model", type=Path, default=_MODEL)
    p.add_argument("--report", type=Path, default=_MODEL.parent / "eval-lesion/report.json")
    args = p.parse_args(argv)
    s = refresh_ood(args.model, args.report)
    print(json.dumps({k: s[k] for k in ("ood_per_kind", "goals")}, indent=2))
    print(
        f"non-mammography flagged: {s['ood_flagged_on_non_mammography']:.3f}; not chosen on: "
        f"{s['ood_flagged_on_non_mammography_not_chosen_on']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
