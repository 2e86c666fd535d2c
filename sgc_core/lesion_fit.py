"""Calibrate a lesion finder on validation data, and measure it: AUC, localisation, FROC.

Everything here is fitted on the validation split only; the same functions then *measure* the
test split, so no choice sees a test image. The window temperatures come from validation
crops; the view, breast and study Platt maps, the operating points, the finding threshold and
the OOD band come from validation views scored by the finder itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
import torch

from sgc_core.calibration import fit_temperature, threshold_for_sensitivity
from sgc_core.datasets.crops import LesionAnnotation
from sgc_core.denoise_map import class_errors, window_scores
from sgc_core.exam import view_feature
from sgc_core.lesion_card import LesionCard, Platt
from sgc_core.lesion_scan import LesionScanner
from sgc_core.results import ViewResult
from sgc_core.scaling import to_model_space
from sgc_core.scan_geometry import scan_dataset
from sgc_core.view_pairs import read_in_pairs

#: A finding hits a lesion when its centre lies within the lesion's radius, or this many mm of
#: its centre for a lesion smaller than that (a calcification cluster's annotated extent).
MIN_HIT_RADIUS_MM = 4.0


@dataclass(frozen=True)
class ScoredView:
    note: LesionAnnotation
    result: ViewResult
    spacing_mm: float  # the source image's pixel spacing


def window_temperature(
    scanner: LesionScanner, images: torch.Tensor, labels: Sequence[int], fine: bool
) -> float:
    """Fit a window temperature on validation crops ([0, 1], (N, 1, crop, crop))."""
    plan = scanner.fine if fine else scanner.coarse
    x = to_model_space(images, 256, dequantize=False)
    scores = torch.cat(
        [
            window_scores(
                class_errors(
                    scanner.model, scanner.sde, x[s : s + 128], len(scanner.card.classes), plan
                )
            )
            for s in range(0, len(x), 128)
        ]
    )
    return fit_temperature(scores, torch.as_tensor(list(labels)), list(scanner.card.priors))


def score_views(scanner: LesionScanner, notes: Sequence[LesionAnnotation]) -> list[ScoredView]:
    """Each view scanned, then read with its study's other views as the card says."""
    out = []
    for note in notes:
        ds = pydicom.dcmread(note.path)
        scan = scan_dataset(ds, scanner.card.spacing_mm)
        out.append(ScoredView(note, scanner.scan(scan), scan.spacing_mm / scan.geometry.step[0]))
    paired = read_in_pairs([v.result for v in out], [v.note.patient_id for v in out], scanner.card)
    return [dataclasses.replace(v, result=r) for v, r in zip(out, paired, strict=True)]


def fit_platt(features: np.ndarray, labels: np.ndarray) -> Platt:
    """Logistic regression on one feature (weak L2, so a separable set stays finite)."""
    from sklearn.linear_model import LogisticRegression

    if len(set(labels.tolist())) < 2:
        raise ValueError("calibration needs positive and negative validation cases")
    lr = LogisticRegression(C=100.0).fit(features[:, None], labels)
    return Platt(float(lr.coef_[0, 0]), float(lr.intercept_[0]))


def exam_features(views: Sequence[ScoredView]) -> tuple[dict, dict]:
    """(breast key -> (feature, malignant)), (study key -> (feature, malignant))."""
    return pool_exams(
        (v.note.patient_id, v.result.laterality or "U", f, v.note.finding == "malignant")
        for v in views
        if (f := view_feature(v.result)) is not None
    )


def pool_exams(views: Iterable[tuple[str, str, float, bool]]) -> tuple[dict, dict]:
    """From (patient, side, view feature, malignant) per view: each breast's and each study's
    maximum feature and whether it holds a malignant view, as the exam reads them."""
    breasts: dict = {}
    for pid, side, f, malignant in views:
        old = breasts.get((pid, side), (-math.inf, False))
        breasts[(pid, side)] = (max(old[0], f), old[1] or malignant)
    studies: dict = {}
    for (pid, _), (f, mal) in breasts.items():
        old = studies.get(pid, (-math.inf, False))
        studies[pid] = (max(old[0], f), old[1] or mal)
    return breasts, studies


def fit_from_views(
    card: LesionCard,
    views: Sequence[ScoredView],
    target_sensitivity: float = 0.9,
    fp_per_image: float = 1.0,
) -> LesionCard:
    """The view/breast/study calibration, operating points, finding threshold and OOD band."""
    scored = [v for v in views if v.result.p_malignant is not None]
    feats = np.array([view_feature(v.result) for v in scored])
    mal = np.array([v.note.finding == "malignant" for v in scored])
    breasts, studies = exam_features(scored)
    ood = np.array([v.result.ood_score for v in scored])
    return fit_maps(card, feats, mal, breasts, studies, target_sensitivity).replace(
        finding_threshold=finding_threshold(scored, fp_per_image),
        ood_low=float(np.quantile(ood, 0.005)),
        ood_high=float(np.quantile(ood, 0.995)),
    )


def fit_maps(
    card: LesionCard,
    feats: np.ndarray,
    mal: np.ndarray,
    breasts: dict,
    studies: dict,
    target_sensitivity: float = 0.9,
) -> LesionCard:
    """The card with its view/breast/study Platt maps and operating points fitted on view
    features and (feature, malignant) per breast and per study (``exam_features``)."""
    view = fit_platt(feats, mal)
    bf, bm = (np.array(a) for a in zip(*breasts.values(), strict=True))
    sf, sm = (np.array(a) for a in zip(*studies.values(), strict=True))
    # A validation split with malignant breasts only (tiny sets) keeps the view map.
    breast = fit_platt(bf, bm) if 0 < bm.sum() < len(bm) else view
    study = fit_platt(sf, sm) if 0 < sm.sum() < len(sm) else view
    p_view = 1 / (1 + np.exp(-(view.a * feats + view.b)))
    p_study = 1 / (1 + np.exp(-(study.a * sf + study.b)))
    return card.replace(
        view=view,
        breast=breast,
        study=study,
        operating_point=threshold_for_sensitivity(p_view, mal, target_sensitivity),
        exam_operating_point=threshold_for_sensitivity(p_study, sm, target_sensitivity)
        if sm.any()
        else 0.5,
    )


def is_hit(v: ScoredView, centre: tuple[float, float]) -> bool:
    note = v.note
    if note.finding == "normal" or note.row is None:
        return False
    reach = max(note.radius, MIN_HIT_RADIUS_MM / v.spacing_mm)
    return math.hypot(centre[0] - note.row, centre[1] - note.col) <= reach


def finding_threshold(views: Sequence[ScoredView], fp_per_image: float) -> float:
    """The lowest P(lesion) threshold with at most ``fp_per_image`` false findings per view."""
    probs = sorted(
        ((f.p_lesion, is_hit(v, f.centre)) for v in views for f in v.result.findings),
        reverse=True,
    )
    fps, threshold = 0, 1.0
    for p, hit in probs:
        fps += not hit
        if fps / max(len(views), 1) > fp_per_image:
            break
        threshold = p
    return float(threshold)


def localisation(views: Sequence[ScoredView], fps: Sequence[float] = (0.5, 1.0, 2.0)) -> dict:
    """Top-finding hit rate on malignant lesions and FROC sensitivity at ``fps`` per image.

    A finding is a true positive when it hits its view's malignant lesion (first hit only);
    every other finding is a false positive. Findings are ranked by P(malignant)."""
    mal = [v for v in views if v.note.finding == "malignant"]
    top_hits = sum(bool(v.result.findings) and is_hit(v, v.result.findings[0].centre) for v in mal)
    marks = []
    for i, v in enumerate(views):
        found = False
        for f in sorted(v.result.findings, key=lambda f: -f.p_malignant):
            hit = v.note.finding == "malignant" and not found and is_hit(v, f.centre)
            found |= hit
            marks.append((f.p_malignant, hit, i))
    marks.sort(key=lambda m: -m[0])
    out = {"malignant_lesions": len(mal), "top_finding_hit": top_hits / max(len(mal), 1)}
    tp = fp = 0
    curve = []
    for _p, hit, _i in marks:
        tp += hit
        fp += not hit
        curve.append((fp / max(len(views), 1), tp / max(len(mal), 1)))
    for rate in fps:
        out[f"froc_sens_at_{rate:g}_fp"] = max((s for f, s in curve if f <= rate), default=0.0)
    return out


#: Candidate noise-level bands for :func:`choose_t_range` (contiguous unions of these bins).
T_EDGES = (0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0)


def choose_t_range(
    scanner: LesionScanner, images: torch.Tensor, labels: Sequence[int], t_max: float = 1.0
) -> tuple[float, float]:
    """The band of t whose summed window scores best separate the classes on validation crops.

    Score = mean of the AUCs lesion-vs-normal and malignant-vs-rest. Why choose a band: the
    label only changes the denoiser's output at intermediate noise; at small t every class
    denoises alike and at large t nothing of the image is left (measured in docs/model.md).
    Only bins below the network's trained ``t_max`` are candidates."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(list(labels))
    x = to_model_space(images, 256, dequantize=False)
    m = scanner.card.malignant
    per_bin = []
    edges = [e for e in T_EDGES if e <= t_max + 1e-9]
    if len(edges) < 2:
        raise ValueError(f"no noise band fits below the trained t_max {t_max}")
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        plan = noise_plan_like(scanner, (lo, hi))
        per_bin.append(
            torch.cat(
                [
                    window_scores(
                        class_errors(
                            scanner.model,
                            scanner.sde,
                            x[s : s + 128],
                            len(scanner.card.classes),
                            plan,
                        )
                    )
                    for s in range(0, len(x), 128)
                ]
            ).numpy()
        )
    best, band = -1.0, (edges[0], edges[-1])
    for i in range(len(per_bin)):
        for j in range(i, min(i + 3, len(per_bin))):
            sc = sum(per_bin[i : j + 1])
            lesion = np.logaddexp.reduce(sc[:, 1:], axis=1) - sc[:, 0]
            mal = sc[:, m] - np.logaddexp.reduce(np.delete(sc, m, axis=1), axis=1)
            quality = 0.5 * (roc_auc_score(y > 0, lesion) + roc_auc_score(y == m, mal))
            if quality > best:
                best, band = quality, (edges[i], edges[j + 1])
    return band


def noise_plan_like(scanner: LesionScanner, t_range: tuple[float, float], k: int = 1):
    from sgc_core.denoise_map import noise_plan

    c = scanner.card.crop
    return noise_plan(k, (1, c, c), t_range, scanner.card.seed + 7)
