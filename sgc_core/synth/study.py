"""Synthetic screening studies (4 views) and whole data sets written to disk with labels.csv.

Reproducibility: study i of a data set is drawn from ``SeedSequence([seed, i])`` alone, so the
same seed gives the same pixels and UIDs whatever the number of studies, the worker count or
the order in which they are written, and a data set of N studies is a prefix of one of 2N
studies. The train/val/test split is a seeded permutation of the study indices, at the
study (= patient) level so no patient is in two splits.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from sgc_core.synth.config import SynthConfig, parse_size
from sgc_core.synth.detector import DEVICES_PER_STYLE
from sgc_core.synth.dicom import StudyHeader, build_mg_dataset, uid_for
from sgc_core.synth.lesions import Lesion, sample_lesion
from sgc_core.synth.morphologies import family_lesion_type, sample_morphology
from sgc_core.synth.phantom import render_view, sample_breast
from sgc_core.synth.styles import HELD_OUT_STYLE, MIXED, Style, get_style, mixed_pool

VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))
LABELS_CSV = "labels.csv"
LABEL_COLUMNS = [
    "path",
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "patient_id",
    "laterality",
    "view",
    "label",
    "finding",
    "lesion_type",
    "lesion_variant",
    "lesion_row",
    "lesion_col",
    "lesion_radius_px",
    "lesion_xmin",
    "lesion_ymin",
    "lesion_xmax",
    "lesion_ymax",
    "density",
    "study_label",
    "photometric",
    "difficulty",
    "style",
    "pixel_spacing_mm",
    "split",
]
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
    config = config or SynthConfig()
    rng = _rng(rng_or_seed)
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
    datasets, truth = [], []
    spacing = config.spacing_mm(style)
    for number, (laterality, view) in enumerate(VIEWS, start=1):
        breast = breasts[laterality]
        shown = breast if render_lesions else replace(breast, lesion=None)
        rendered = render_view(rng, shown, view, config, style, device)
        datasets.append(
            build_mg_dataset(
                header,
                sop_uid=uid_for(token, laterality, view),
                instance_number=number,
                laterality=laterality,
                view=view,
                pixels=rendered.pixels,
                bits_stored=convention.bits_stored,
                window_center=rendered.window_center,
                window_width=rendered.window_width,
                pixel_spacing_mm=spacing,
                monochrome1=convention.photometric == "MONOCHROME1",
                thickness_mm=breast.thickness_mm,
                convention=convention,
                response=style.detector.response,
            )
        )
        center = rendered.lesion_center
        truth.append(
            ViewTruth(
                laterality=laterality,
                view=view,
                finding=breast.finding,
                lesion_type=breast.lesion.lesion_type if breast.lesion else "none",
                lesion_row=center[0] if center else None,
                lesion_col=center[1] if center else None,
                lesion_radius_px=round(rendered.lesion_radius_px, 2),
                density=breast.density,
                style=style.name,
                pixel_spacing_mm=spacing,
                lesion_box=rendered.lesion_box,
                lesion_variant=breast.lesion.variant if breast.lesion else "",
            )
        )
    return SyntheticStudy(datasets, truth)


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


def assign_splits(n_studies: int, seed: int, fractions: tuple[float, float, float]) -> list[str]:
    """A seeded study-level split with exact proportions (train gets the rounding)."""
    if (
        len(fractions) != 3
        or any(f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0)
    ):
        raise ValueError(
            f"split fractions must be three non-negative numbers summing to 1: {fractions}"
        )
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5E11])).permutation(n_studies)
    n_val = round(fractions[1] * n_studies)
    n_test = round(fractions[2] * n_studies)
    splits = ["train"] * n_studies
    for rank, index in enumerate(order):
        if rank < n_test:
            splits[index] = "test"
        elif rank < n_test + n_val:
            splits[index] = "val"
    return splits


def _monochrome1_fraction(monochrome: str | float) -> float:
    if isinstance(monochrome, str):
        table = {"MONOCHROME2": 0.0, "MONOCHROME1": 1.0}
        if monochrome.upper() not in table:
            raise ValueError(
                f"monochrome must be MONOCHROME1, MONOCHROME2 or a fraction, not {monochrome!r}"
            )
        return table[monochrome.upper()]
    return float(monochrome)


def _box_columns(box: tuple[int, int, int, int] | None) -> dict[str, int | str]:
    names = ("lesion_ymin", "lesion_xmin", "lesion_ymax", "lesion_xmax")
    return dict(zip(names, box or ("",) * 4, strict=True))


def _write_study(job: tuple) -> list[dict]:
    """Generate and write study ``index``; top-level so a process pool can run it."""
    out_dir, index, seed, config, jpeg2000 = job
    patient_id = f"SYN{seed:04d}-{index:06d}" if seed < 10**4 else f"SYN{seed}-{index:06d}"
    study = generate_study_with_truth([seed, index], config, patient_id)
    rows = []
    folder = Path(out_dir) / "images" / patient_id
    folder.mkdir(parents=True, exist_ok=True)
    for ds, truth in zip(study.datasets, study.truth, strict=True):
        if jpeg2000:
            from pydicom.uid import JPEG2000Lossless

            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        name = f"{truth.laterality}_{truth.view}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
        rows.append(
            {
                "path": f"images/{patient_id}/{name}",
                "study_uid": ds.StudyInstanceUID,
                "series_uid": ds.SeriesInstanceUID,
                "sop_instance_uid": ds.SOPInstanceUID,
                "patient_id": patient_id,
                "laterality": truth.laterality,
                "view": truth.view,
                "label": truth.label,
                "finding": truth.finding,
                "lesion_type": truth.lesion_type,
                "lesion_variant": truth.lesion_variant,
                "lesion_row": "" if truth.lesion_row is None else truth.lesion_row,
                "lesion_col": "" if truth.lesion_col is None else truth.lesion_col,
                "lesion_radius_px": truth.lesion_radius_px,
                **_box_columns(truth.lesion_box),
                "density": truth.density,
                "study_label": "malignant" if study.study_finding == "malignant" else "benign",
                "photometric": ds.PhotometricInterpretation,
                "difficulty": config.difficulty,
                "style": truth.style,
                "pixel_spacing_mm": f"{truth.pixel_spacing_mm:.6g}",
            }
        )
    return rows


def write_dataset(
    out_dir: str | Path,
    n_studies: int,
    seed: int = 0,
    size: str | tuple[int, int] = "small",
    difficulty: float = 0.5,
    jpeg2000: bool = False,
    monochrome: str | float = "MONOCHROME2",
    *,
    normal_fraction: float = 0.0,
    malignant_fraction: float = 0.5,
    mass_fraction: float = 0.6,
    bits_stored: int = 12,
    style: str = "classic",
    hold_out: str | None = HELD_OUT_STYLE,
    lesion_types: tuple[str, ...] = (),
    pixel_mm: float | None = None,
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n_studies`` studies as DICOM files under ``out_dir``/images plus labels.csv
    and synth.json (the exact parameters, to regenerate it). Returns the labels.csv path.

    style: a style name or "mixed" (one per study, drawn from the family without
    ``hold_out``); ``monochrome`` and ``bits_stored`` apply to the classic style only;
    ``pixel_mm`` fixes the pixel spacing instead of ``size`` (see SynthConfig)."""
    if n_studies < 1:
        raise ValueError(f"n_studies must be >= 1, not {n_studies}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    rows_cols = parse_size(size)
    config = SynthConfig(
        rows=rows_cols[0],
        cols=rows_cols[1],
        difficulty=difficulty,
        malignant_fraction=malignant_fraction,
        normal_fraction=normal_fraction,
        mass_fraction=mass_fraction,
        bits_stored=bits_stored,
        monochrome1_fraction=_monochrome1_fraction(monochrome),
        style=style,
        hold_out=hold_out,
        lesion_types=tuple(lesion_types),
        pixel_mm=pixel_mm,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split_of = assign_splits(n_studies, seed, splits)
    jobs = [(str(out), i, seed, config, jpeg2000) for i in range(n_studies)]
    results: list[list[dict]] = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for rows in pool.map(_write_study, jobs):
                results.append(rows)
                if progress:
                    progress(1)
    else:
        for job in jobs:
            results.append(_write_study(job))
            if progress:
                progress(1)
    labels = out / LABELS_CSV
    with labels.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        for index, rows in enumerate(results):
            for row in rows:
                writer.writerow({**row, "split": split_of[index]})
    meta = {
        "generator": "sgc_core.synth",
        "seed": seed,
        "n_studies": n_studies,
        "jpeg2000": jpeg2000,
        "splits": list(splits),
        "config": replace(config).to_dict(),
        # Every style's parameters as written, so the set stays described if the registry
        # changes later.
        "styles": {
            name: asdict(get_style(name))
            for name in sorted({row["style"] for rows in results for row in rows})
        },
    }
    (out / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    return labels
