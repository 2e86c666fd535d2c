"""Synthetic screening studies (4 views) with their ground truth; dataset.py writes whole
data sets to disk with labels.csv.

Reproducibility: study i of a data set is drawn from ``SeedSequence([seed, i])`` alone, so the
same seed gives the same pixels and UIDs whatever the number of studies, the worker count or
the order in which they are written, and a data set of N studies is a prefix of one of 2N
studies. The train/val/test split is a seeded permutation of the study indices, at the
study (= patient) level so no patient is in two splits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
from pydicom.dataset import Dataset

from sgc_core.synth.config import SynthConfig
from sgc_core.synth.detector import DEVICES_PER_STYLE
from sgc_core.synth.dicom import StudyHeader, build_mg_dataset, uid_for
from sgc_core.synth.lesions import Lesion, sample_lesion
from sgc_core.synth.morphologies import family_lesion_type, sample_morphology
from sgc_core.synth.phantom import Breast, RenderedView, render_view, sample_breast
from sgc_core.synth.styles import MIXED, HeaderConvention, Style, get_style, mixed_pool

VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))
_FINDING_RANK = {"normal": 0, "benign": 1, "malignant": 2}


@dataclass(frozen=True)
class ViewTruth:
    """The ground truth of one generated image (one row of labels.csv without path/split)."""

    laterality: str
    view: str
    finding: str  # normal | benign | malignant
    lesion_type: str  # none | mass_round | ... | calc_pleomorphic
    lesion_row: int | None
    lesion_col: int | None
    lesion_radius_px: float
    density: str
    style: str = "classic"
    pixel_spacing_mm: float = 0.0
    lesion_box: tuple[int, int, int, int] | None = None  # (ymin, xmin, ymax, xmax), inclusive
    lesion_variant: str = ""  # the pattern within the type (family styles), e.g. "rim"

    @property
    def label(self) -> str:
        """Binary training label: a breast without a lesion counts as not malignant."""
        return "malignant" if self.finding == "malignant" else "benign"


@dataclass(frozen=True)
class SyntheticStudy:
    datasets: list[Dataset]
    truth: list[ViewTruth]

    @property
    def study_finding(self) -> str:
        """The worst breast decides the study."""
        return max((t.finding for t in self.truth), key=_FINDING_RANK.__getitem__)


def _rng(rng_or_seed: np.random.Generator | int | Iterable[int]) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, int | np.integer):
        return np.random.default_rng(int(rng_or_seed))
    return np.random.default_rng(np.random.SeedSequence(list(rng_or_seed)))


def generate_study(
    rng_or_seed: np.random.Generator | int | Iterable[int], config: SynthConfig | None = None
) -> list[Dataset]:
    """Four MG datasets (R/L x CC/MLO) of one synthetic patient."""
    return generate_study_with_truth(rng_or_seed, config).datasets


def study_style(rng: np.random.Generator, config: SynthConfig) -> Style:
    """The config's style, or for "mixed" one drawn uniformly from the pool (no draw
    otherwise, so a single-style set keeps its random stream)."""
    if config.style != MIXED:
        return get_style(config.style)
    pool = mixed_pool(config.hold_out)
    return get_style(pool[int(rng.integers(len(pool)))])


def _sample_lesion(rng: np.random.Generator, config: SynthConfig, style: Style) -> Lesion | None:
    if rng.random() < config.normal_fraction:
        return None
    d = config.difficulty
    if config.lesion_types:
        lesion_type = config.lesion_types[int(rng.integers(len(config.lesion_types)))]
        return sample_morphology(rng, lesion_type, d)
    malignant = bool(rng.random() < config.malignant_fraction)
    mass = bool(rng.random() < config.mass_fraction)
    if style.lesions == "classic":
        return sample_lesion(rng, malignant, mass, d)
    return sample_morphology(rng, family_lesion_type(rng, malignant, not mass), d)


@dataclass(frozen=True)
class _StudyPlan:
    """What a study draws before any pixels, shared by its four views."""

    config: SynthConfig  # for the study's style
    style: Style
    token: int  # the study's UIDs and identifiers derive from it
    device: int  # the style's detector that takes all four views
    breasts: dict[str, Breast]
    convention: HeaderConvention
    header: StudyHeader


def _plan_study(
    rng: np.random.Generator, config: SynthConfig, patient_id: str | None
) -> _StudyPlan:
    """Draw the study's style, token, detector, both breasts and header, in this order: the
    order of the draws is the seed's contract (same seed, same study)."""
    style = study_style(rng, config)
    config = config.for_style(style)
    token = int(rng.integers(0, 2**62))
    # One of the style's detectors takes all four views (classic has none: no draw).
    device = int(rng.integers(DEVICES_PER_STYLE)) if style.name != "classic" else 0
    breasts = {}
    for laterality in ("R", "L"):
        lesion = _sample_lesion(rng, config, style)
        breasts[laterality] = sample_breast(rng, laterality, lesion, config)
    monochrome1 = bool(rng.random() < config.monochrome1_fraction)
    convention = style.header
    if style.name == "classic":
        photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
        convention = replace(convention, photometric=photometric, bits_stored=config.bits_stored)
    header = _study_header(rng, token, patient_id)
    return _StudyPlan(config, style, token, device, breasts, convention, header)


def generate_study_with_truth(
    rng_or_seed: np.random.Generator | int | Iterable[int],
    config: SynthConfig | None = None,
    patient_id: str | None = None,
    *,
    render_lesions: bool = True,
) -> SyntheticStudy:
    """Four MG datasets and their ground truth (finding, lesion type and position per view).

    render_lesions=False draws the same study but leaves the lesions out of its pixels (the
    truth keeps the findings, without positions): the truth test compares the two.
    """
    rng = _rng(rng_or_seed)
    plan = _plan_study(rng, config or SynthConfig(), patient_id)
    datasets, truth = [], []
    for number, (laterality, view) in enumerate(VIEWS, start=1):
        breast = plan.breasts[laterality]
        shown = breast if render_lesions else replace(breast, lesion=None)
        rendered = render_view(rng, shown, view, plan.config, plan.style, plan.device)
        datasets.append(_view_dataset(plan, number, laterality, view, rendered))
        truth.append(_view_truth(plan, breast, view, rendered))
    return SyntheticStudy(datasets, truth)


def _view_dataset(
    plan: _StudyPlan, number: int, laterality: str, view: str, rendered: RenderedView
) -> Dataset:
    """The MG dataset of one rendered view, in the study's header convention."""
    convention = plan.convention
    return build_mg_dataset(
        plan.header,
        sop_uid=uid_for(plan.token, laterality, view),
        instance_number=number,
        laterality=laterality,
        view=view,
        pixels=rendered.pixels,
        bits_stored=convention.bits_stored,
        window_center=rendered.window_center,
        window_width=rendered.window_width,
        pixel_spacing_mm=plan.config.spacing_mm(plan.style),
        monochrome1=convention.photometric == "MONOCHROME1",
        thickness_mm=plan.breasts[laterality].thickness_mm,
        convention=convention,
        response=plan.style.detector.response,
    )


def _view_truth(plan: _StudyPlan, breast: Breast, view: str, rendered: RenderedView) -> ViewTruth:
    """One view's ground truth: the breast's finding, where its lesion landed in this image."""
    center = rendered.lesion_center
    return ViewTruth(
        laterality=breast.laterality,
        view=view,
        finding=breast.finding,
        lesion_type=breast.lesion.lesion_type if breast.lesion else "none",
        lesion_row=center[0] if center else None,
        lesion_col=center[1] if center else None,
        lesion_radius_px=round(rendered.lesion_radius_px, 2),
        density=breast.density,
        style=plan.style.name,
        pixel_spacing_mm=plan.config.spacing_mm(plan.style),
        lesion_box=rendered.lesion_box,
        lesion_variant=breast.lesion.variant if breast.lesion else "",
    )


def _study_header(rng: np.random.Generator, token: int, patient_id: str | None) -> StudyHeader:
    """The patient and study identifiers (UIDs from the study's token)."""
    age = int(rng.integers(40, 76))
    study_day = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
    pid = patient_id or f"SYN{token % 10**10:010d}"
    return StudyHeader(
        patient_id=pid,
        patient_name=f"Phantom^{pid}",
        birth_date=f"{study_day.year - age}0101",
        age_years=age,
        study_uid=uid_for(token, "study"),
        series_uid=uid_for(token, "series"),
        study_date=study_day.strftime("%Y%m%d"),
        accession=f"A{token % 10**12:012d}",
    )
