"""VinDr-Mammo (PhysioNet) in its official layout.

``breast-level_annotations.csv`` has one row per image (study_id, series_id, image_id,
laterality, view_position, breast_birads, breast_density, split) and the images are
``images/<study_id>/<image_id>.dicom``. The set has no pathology, only BI-RADS assessments, so
the binary label is a mapping of BI-RADS, configurable with ``birads_map``. The default,
:data:`DEFAULT_BIRADS_MAP`, is the usual screening reading: BI-RADS 1-3 (negative, benign,
probably benign: <= 2 % malignancy) -> benign, BI-RADS 4-5 (suspicious, highly suggestive)
-> malignant. Map a category to None to drop it (e.g. ``{1: None}`` for lesion-only work).
The official split is "training"/"test"; a seeded fraction of training studies can be moved
to validation (one study = one patient here).
"""

from __future__ import annotations

import re
from pathlib import Path

from sgc_core.datasets.mammo import (
    CLASS_NAMES,
    DatasetLayoutError,
    MammoDataset,
    MammoItem,
    carve_validation,
    check_missing_policy,
    raise_if_missing,
    read_csv_rows,
)
from sgc_core.preprocess import PreprocessConfig

ANNOTATIONS_CSV = "breast-level_annotations.csv"
DEFAULT_BIRADS_MAP: dict[int, str | None] = {
    1: "benign",
    2: "benign",
    3: "benign",
    4: "malignant",
    5: "malignant",
}
REQUIRED = [
    "study_id",
    "series_id",
    "image_id",
    "laterality",
    "view_position",
    "breast_birads",
    "split",
]
OFFICIAL_SPLITS = {"training": "train", "train": "train", "test": "test"}


def parse_birads(value: str) -> int:
    """ "BI-RADS 4" -> 4."""
    match = re.search(r"(\d)", value)
    if match is None:
        raise ValueError(f"not a BI-RADS category: {value!r}")
    return int(match.group(1))


def load_vindr_mammo(
    root: str | Path,
    preprocess: PreprocessConfig | None = None,
    birads_map: dict[int, str | None] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    missing: str = "error",
) -> MammoDataset:
    check_missing_policy(missing)
    root = Path(root)
    mapping = DEFAULT_BIRADS_MAP if birads_map is None else birads_map
    bad = {v for v in mapping.values() if v is not None and v not in CLASS_NAMES}
    if bad:
        raise ValueError(f"birads_map values must be {CLASS_NAMES} or None, not {sorted(bad)}")
    csv_path = root / ANNOTATIONS_CSV
    if not csv_path.is_file():
        raise DatasetLayoutError(f"{root}: no {ANNOTATIONS_CSV} (VinDr-Mammo layout expected)")
    rows = read_csv_rows(csv_path, REQUIRED)
    official = {}
    for row in rows:
        split = OFFICIAL_SPLITS.get(row["split"].lower())
        if split is None:
            raise DatasetLayoutError(f"{csv_path}: split {row['split']!r} is not training/test")
        official[row["study_id"]] = split
    splits = carve_validation(official, val_fraction, seed)
    items, absent = [], []
    for row in rows:
        try:
            birads = parse_birads(row["breast_birads"])
        except ValueError as exc:
            raise DatasetLayoutError(f"{csv_path}: {exc}") from None
        if birads not in mapping:
            raise DatasetLayoutError(
                f"{csv_path}: BI-RADS {birads} has no entry in the birads_map {mapping}"
            )
        label = mapping[birads]
        if label is None:
            continue
        path = root / "images" / row["study_id"] / f"{row['image_id']}.dicom"
        if not path.is_file():
            absent.append(str(path))
            continue
        meta = {
            "study_id": row["study_id"],
            "series_id": row["series_id"],
            "image_id": row["image_id"],
            "laterality": row["laterality"],
            "view": row["view_position"],
            "birads": birads,
            "density": row.get("breast_density", ""),
            "official_split": official[row["study_id"]],
        }
        items.append(
            MammoItem(
                path, CLASS_NAMES.index(label), splits[row["study_id"]], row["study_id"], meta
            )
        )
    if missing == "error":
        raise_if_missing(f"VinDr-Mammo at {root}", absent, len(rows))
    return MammoDataset(items, preprocess, name="VinDr-Mammo")
