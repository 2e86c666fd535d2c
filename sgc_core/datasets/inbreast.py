"""INbreast in its distributed layout: ``INbreast.xls`` (or its CSV export ``INbreast.csv``,
';'-separated) with one row per image (``File Name``, ``Bi-Rads``, ``Laterality``, ``View``,
``ACR``) and the images as ``AllDICOMs/<File Name>_<patient hash>_MG_<L|R>_<view>_ANON.dcm``.

INbreast has BI-RADS, not pathology for every image, so the label maps BI-RADS with a
configurable ``birads_map`` (keys "1".."6" or sub-categories "4a"/"4b"/"4c", which fall back
to "4"). Default :data:`DEFAULT_BIRADS_MAP`: 1-3 benign, 4a-6 malignant (6 = biopsy-proven).
There is no official split: a seeded patient-level split is drawn, the patient being the
hash in the file name (the sheet's Patient ID column is anonymised away).
"""

from __future__ import annotations

import re
from pathlib import Path

from sgc_core.datasets.mammo import (
    CLASS_NAMES,
    DatasetLayoutError,
    MammoDataset,
    MammoItem,
    check_columns,
    check_missing_policy,
    raise_if_missing,
    random_patient_split,
    read_csv_rows,
)
from sgc_core.preprocess import PreprocessConfig

DEFAULT_BIRADS_MAP: dict[str, str | None] = {
    "1": "benign",
    "2": "benign",
    "3": "benign",
    "4": "malignant",
    "5": "malignant",
    "6": "malignant",
}
REQUIRED = ["File Name", "Bi-Rads"]
SHEET_NAMES = ("INbreast.xls", "INbreast.csv")


def _cell(value: object) -> str:
    """xlrd gives numbers as floats: 20586908.0 -> "20586908", 4.0 -> "4"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_sheet(path: Path) -> list[dict[str, str]]:
    """Rows of INbreast.csv or INbreast.xls; rows without a file name (footers) are dropped."""
    if path.suffix.lower() == ".xls":
        import xlrd

        try:
            sheet = xlrd.open_workbook(str(path)).sheet_by_index(0)
        except Exception as exc:
            raise DatasetLayoutError(f"cannot read {path}: {exc}") from exc
        header = [_cell(v) for v in sheet.row_values(0)]
        check_columns(path, header, REQUIRED)
        rows = [
            dict(zip(header, map(_cell, sheet.row_values(i)), strict=False))
            for i in range(1, sheet.nrows)
        ]
    else:
        rows = read_csv_rows(path, REQUIRED)
    return [r for r in rows if r.get("File Name")]


def map_birads(value: str, mapping: dict[str, str | None]) -> str | None:
    key = value.strip().lower()
    if key in mapping:
        return mapping[key]
    major = re.match(r"\d", key)
    if major and major.group(0) in mapping:
        return mapping[major.group(0)]
    raise ValueError(f"BI-RADS {value!r} has no entry in the birads_map {mapping}")


def load_inbreast(
    root: str | Path,
    preprocess: PreprocessConfig | None = None,
    birads_map: dict[str, str | None] | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    missing: str = "error",
) -> MammoDataset:
    check_missing_policy(missing)
    root = Path(root)
    mapping = {str(k).lower(): v for k, v in (birads_map or DEFAULT_BIRADS_MAP).items()}
    bad = {v for v in mapping.values() if v is not None and v not in CLASS_NAMES}
    if bad:
        raise ValueError(f"birads_map values must be {CLASS_NAMES} or None, not {sorted(bad)}")
    sheet = next((root / n for n in SHEET_NAMES if (root / n).is_file()), None)
    if sheet is None:
        raise DatasetLayoutError(f"{root}: neither INbreast.xls nor INbreast.csv found")
    folder = root / "AllDICOMs"
    if not folder.is_dir():
        raise DatasetLayoutError(f"{root}: no AllDICOMs folder")
    rows = read_sheet(sheet)
    found, absent = [], []
    for row in rows:
        try:
            label = map_birads(row["Bi-Rads"], mapping)
        except ValueError as exc:
            raise DatasetLayoutError(f"{sheet}: {exc}") from None
        if label is None:
            continue
        matches = sorted(folder.glob(f"{row['File Name']}_*.dcm"))
        if not matches:
            absent.append(f"{folder}/{row['File Name']}_*.dcm")
            continue
        if len(matches) > 1:
            raise DatasetLayoutError(f"{folder}: several files for File Name {row['File Name']}")
        parts = matches[0].stem.split("_")
        patient = parts[1] if len(parts) > 1 else row["File Name"]
        found.append((matches[0], label, patient, row))
    splits = random_patient_split([p for _, _, p, _ in found], fractions, seed)
    items = [
        MammoItem(
            path,
            CLASS_NAMES.index(label),
            splits[patient],
            patient,
            {
                "file_name": row["File Name"],
                "birads": row["Bi-Rads"],
                "laterality": row.get("Laterality", ""),
                "view": row.get("View", ""),
                "density": row.get("ACR", ""),
            },
        )
        for path, label, patient, row in found
    ]
    if missing == "error":
        raise_if_missing(f"INbreast at {root}", absent, len(rows))
    return MammoDataset(items, preprocess, name="INbreast")
