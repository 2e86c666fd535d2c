"""A view read together with the other projection of its breast.

Why: a lesion is one object in the breast, so it shows in the CC and in the MLO; a false
candidate raised by one view's overlapping tissue has no reason to recur in the other
projection. A screening reader trusts what both views show, and a card whose
``view_feature`` is ``"pair"`` does the same: a view's feature is the mean of its own top
malignant log-odds and the highest of the other projections of the same breast in the same
study. A view without a scored partner keeps its own; its P(malignant) is read through the
card's view map fitted on this feature.

The findings are matched too: a lesion lies at about the same distance behind the nipple in
both projections, so each finding says whether the partner view has one at its depth, and a
card whose ``finding_order`` is ``"pair"`` puts the finding both views support first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_scan import platt
from sgc_core.results import Finding, ViewResult

OWN = "top_malignant_logit"
FEATURE = "view_feature"
PAIRED = "read_with_partner"


def own_feature(view: ViewResult) -> float | None:
    """The view's own top malignant log-odds (None when it was not scored)."""
    if view.p_malignant is None:
        return None
    return float(view.extra.get(OWN, -20.0))


def partners(view: ViewResult, others: Sequence[ViewResult]) -> list[ViewResult]:
    """The scored other projections of the view's breast among ``others``."""
    if view.view is None:
        return []
    return [
        o
        for o in others
        if o is not view and o.laterality == view.laterality and o.view != view.view
        if o.p_malignant is not None
    ]


def partner_feature(view: ViewResult, others: Sequence[ViewResult]) -> float | None:
    """The best own feature among the other projections of the view's breast (None: none)."""
    return max((own_feature(o) for o in partners(view, others)), default=None)


def pair_feature(view: ViewResult, others: Sequence[ViewResult]) -> float | None:
    """Mean of the view's own feature and its partner's; its own without a partner."""
    own = own_feature(view)
    if own is None:
        return None
    partner = partner_feature(view, others)
    return own if partner is None else 0.5 * (own + partner)


def depth_match(finding: Finding, partner: Sequence[Finding], card: LesionCard) -> float | None:
    """The best P(lesion) of a partner finding within the card's depth of ``finding``'s
    distance from the nipple (None: no such finding, or no distance measured)."""
    d = finding.nipple_distance_mm
    if d is None:
        return None
    near = [
        g.p_lesion
        for g in partner
        if g.nipple_distance_mm is not None and abs(g.nipple_distance_mm - d) <= card.pair_depth_mm
    ]
    return max(near, default=None)


def order_findings(
    view: ViewResult, others: Sequence[ViewResult], card: LesionCard
) -> tuple[Finding, ...]:
    """The view's findings marked with whether the partner view shows one at their depth and,
    for a card ordering in pairs, the best supported first (a stable sort: ties keep the
    scan's order). Unchanged without a scored partner."""
    found = partners(view, others)
    if not found:
        return view.findings
    partner = [g for o in found for g in o.findings]
    matches = [depth_match(f, partner, card) for f in view.findings]
    marked = [
        dataclasses.replace(f, in_partner_view=m is not None)
        for f, m in zip(view.findings, matches, strict=True)
    ]
    if card.finding_order != "pair":
        return tuple(marked)
    keys = [
        f.p_lesion + card.pair_weight * (m or 0.0) for f, m in zip(marked, matches, strict=True)
    ]
    return tuple(f for _, f in sorted(zip(keys, marked, strict=True), key=lambda kf: -kf[0]))


def read_in_pairs(
    results: Sequence[ViewResult], studies: Sequence[str], card: LesionCard
) -> list[ViewResult]:
    """Results read with the other views of their study (``studies[i]`` names result i's); a
    card reading views and findings alone gets them back unchanged."""
    if card.view_feature != "pair" and card.finding_order != "pair":
        return list(results)
    return [
        read_with(result, [r for r, s in zip(results, studies, strict=True) if s == study], card)
        for result, study in zip(results, studies, strict=True)
    ]


def read_with(result: ViewResult, same: Sequence[ViewResult], card: LesionCard) -> ViewResult:
    """One view read with ``same`` (its study's views): its findings in the card's order and,
    for a card whose view feature is "pair", its P(malignant) from the pair feature."""
    result = dataclasses.replace(result, findings=order_findings(result, same, card))
    f = pair_feature(result, same) if card.view_feature == "pair" else None
    if f is None:
        return result
    p = platt(card.view, f)
    return dataclasses.replace(
        result,
        p_malignant=p,
        predicted_class="malignant" if p >= card.operating_point else "not malignant",
        method=f"{result.method}+pair",  # the card's reading, partner or not
        extra={**result.extra, FEATURE: f, PAIRED: partner_feature(result, same) is not None},
    )
