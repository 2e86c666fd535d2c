"""A view read together with the other projection of its breast.

Why: a lesion is one object in the breast, so it shows in the CC and in the MLO; a false
candidate raised by one view's overlapping tissue has no reason to recur in the other
projection. A screening reader trusts what both views show, and a card whose
``view_feature`` is ``"pair"`` does the same: a view's feature is the mean of its own top
malignant log-odds and the highest of the other projections of the same breast in the same
study. A view without a scored partner keeps its own. The findings do not change; only the
view's P(malignant), read through the card's view map fitted on this feature.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_scan import platt
from sgc_core.results import ViewResult

OWN = "top_malignant_logit"
FEATURE = "view_feature"
PAIRED = "read_with_partner"


def own_feature(view: ViewResult) -> float | None:
    """The view's own top malignant log-odds (None when it was not scored)."""
    if view.p_malignant is None:
        return None
    return float(view.extra.get(OWN, -20.0))


def partner_feature(view: ViewResult, others: Sequence[ViewResult]) -> float | None:
    """The best own feature among the other projections of the view's breast (None: none)."""
    if view.view is None:
        return None
    partners = [
        f
        for o in others
        if o is not view and o.laterality == view.laterality and o.view != view.view
        if (f := own_feature(o)) is not None
    ]
    return max(partners, default=None)


def pair_feature(view: ViewResult, others: Sequence[ViewResult]) -> float | None:
    """Mean of the view's own feature and its partner's; its own without a partner."""
    own = own_feature(view)
    if own is None:
        return None
    partner = partner_feature(view, others)
    return own if partner is None else 0.5 * (own + partner)


def read_in_pairs(
    results: Sequence[ViewResult], studies: Sequence[str], card: LesionCard
) -> list[ViewResult]:
    """Results with the card's view feature (``studies[i]`` names result i's study); a card
    reading views alone gets them back unchanged."""
    if card.view_feature != "pair":
        return list(results)
    out = []
    for result, study in zip(results, studies, strict=True):
        same = [r for r, s in zip(results, studies, strict=True) if s == study]
        f = pair_feature(result, same)
        if f is None:
            out.append(result)
            continue
        p = platt(card.view, f)
        out.append(
            dataclasses.replace(
                result,
                p_malignant=p,
                predicted_class="malignant" if p >= card.operating_point else "not malignant",
                method=f"{result.method}+pair",  # the card's reading, partner or not
                extra={
                    **result.extra,
                    FEATURE: f,
                    PAIRED: partner_feature(result, same) is not None,
                },
            )
        )
    return out
