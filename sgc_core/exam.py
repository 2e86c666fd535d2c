"""Per breast and per study: the exam-level result a screening reader gives.

A breast is as suspicious as its most suspicious view, a study as its most suspicious breast:
the feature is the maximum of the views' features (each view's top malignant log-odds, or,
for a card reading views in pairs, its mean with the other projection), mapped to a probability by
the card's Platt maps, which were fitted on validation breasts and studies (so the exam's
probability is calibrated on exams, not borrowed from views).
"""

from __future__ import annotations

from collections.abc import Sequence

from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_scan import platt
from sgc_core.results import BreastResult, ExamResult, ViewResult
from sgc_core.view_pairs import FEATURE, own_feature


def view_feature(view: ViewResult) -> float | None:
    """The feature the card's maps read: the pair feature where one was set, else its own."""
    own = own_feature(view)
    return None if own is None else float(view.extra.get(FEATURE, own))


def exam_result(views: Sequence[ViewResult], card: LesionCard) -> ExamResult:
    """Combine a study's view results (any laterality mix; unscored views are skipped)."""
    breasts = []
    study_features = []
    for side in sorted({v.laterality or "U" for v in views}):
        feats = [
            f for v in views if (v.laterality or "U") == side if (f := view_feature(v)) is not None
        ]
        n = sum(1 for v in views if (v.laterality or "U") == side)
        if not feats:
            breasts.append(BreastResult(side, None, "not scored", n))
            continue
        top = max(feats)
        study_features.append(top)
        p = platt(card.breast, top)
        breasts.append(BreastResult(side, p, _cls(p, card.exam_operating_point), n))
    if not study_features:
        return ExamResult(tuple(breasts), None, "not scored", card.exam_operating_point)
    p = platt(card.study, max(study_features))
    return ExamResult(
        tuple(breasts), p, _cls(p, card.exam_operating_point), card.exam_operating_point
    )


def _cls(p: float, threshold: float) -> str:
    return "malignant" if p >= threshold else "not malignant"
