"""Whole synthetic data sets on disk: DICOM files under images/, labels.csv and synth.json.

Split from study.py (which draws one study) so that each file holds one job: this one turns
studies into files, rows and a record of the parameters. Study i is drawn from
``SeedSequence([seed, i])`` alone (study.py), so the worker count and the order of writing
never change a file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from sgc_core.split_fractions import check_split_fractions
from sgc_core.synth.config import SynthConfig, parse_size
from sgc_core.synth.study import generate_study_with_truth
from sgc_core.synth.styles import HELD_OUT_STYLE, get_style

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


def assign_splits(n_studies: int, seed: int, fractions: tuple[float, float, float]) -> list[str]:
    """A seeded study-level split with exact proportions (train gets the rounding)."""
    check_split_fractions(fractions)
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
    results = _run_jobs(jobs, workers, progress)
    labels = _write_labels(out / LABELS_CSV, results, split_of)
    _write_meta(out / "synth.json", seed, n_studies, jpeg2000, splits, config, results)
    return labels


def write_studies(
    out_dir: str | Path, indices: Iterable[int], seed: int, config: SynthConfig, workers: int = 1
) -> list[dict]:
    """Write only studies ``indices`` of the draw (seed, config) and return their label rows.

    A study depends on (seed, index) alone, so these are byte-identical to the same studies
    of a full ``write_dataset`` draw: an evaluation's views can be written again, with their
    truth, without the rest of the draw."""
    jobs = [(str(out_dir), i, seed, config, False) for i in indices]
    return [row for rows in _run_jobs(jobs, workers, None) for row in rows]


def _run_jobs(
    jobs: Iterable[tuple], workers: int, progress: Callable[[int], None] | None
) -> list[list[dict]]:
    """Write every study, in a process pool when ``workers`` > 1; the rows come back in
    study order either way, so labels.csv does not depend on the worker count."""
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
    return results


def _write_labels(labels: Path, results: list[list[dict]], split_of: list[str]) -> Path:
    """labels.csv: one row per image, with its study's split."""
    with labels.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        for index, rows in enumerate(results):
            for row in rows:
                writer.writerow({**row, "split": split_of[index]})
    return labels


def _write_meta(
    path: Path,
    seed: int,
    n_studies: int,
    jpeg2000: bool,
    splits: tuple[float, float, float],
    config: SynthConfig,
    results: list[list[dict]],
) -> None:
    """synth.json: the parameters that regenerate the set, and every style as written."""
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
    path.write_text(json.dumps(meta, indent=2) + "\n")
