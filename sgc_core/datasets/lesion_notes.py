"""Where the lesions are in the real data sets' published layouts, as crop annotations.

Why: the lesion finder trains on lesion-centred crops labelled by lesion class and on normal
tissue; the same :class:`~sgc_core.datasets.crops.LesionAnnotation` that ``sgc synth`` writes
comes here from each data set's own annotation, so ``sgc train-lesion --format`` trains on
real mammograms with no conversion step:

- CBIS-DDSM: each abnormality's ROI mask (a DICOM the size of the full image); centre = the
  mask's centroid, radius = that of a disc of the mask's area. Class = its pathology.
- VinDr-Mammo: ``finding_annotations.csv`` boxes; centre = the box centre, radius = half its
  longer side. Class = the finding's BI-RADS (2-3 benign, 4-5 malignant); an image without a
  box is normal only when its breast is BI-RADS 1 (an unboxed BI-RADS 2-5 breast may hold a
  finding that cannot be placed, so it is left out).
- INbreast: ``AllXML/<File Name>.xml`` contours (OsiriX plist, points "(x, y)" in pixels);
  centre = the polygon's vertex mean, radius = that of a disc of its area; ROIs of fewer than
  three points (single calcifications) are left out. Class = the image's BI-RADS (INbreast
  gives no per-ROI pathology): 2-3 benign, 4-6 malignant, 1 normal.

Splits and patients are those of the whole-view loaders (official split, patients whole, a
seeded validation part), so a lesion finder and a whole-view model see the same test women.
A view with several lesions keeps the worst one (malignant first, then the largest) as its
lesion and the rest in ``others``: each gets crops of its own class, and no background crop is
cut near any of them.
"""

from __future__ import annotations

import math
import plistlib
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom

from sgc_core.datasets import cbis, inbreast, vindr
from sgc_core.datasets.crops import CropDataError, LesionAnnotation, read_synthetic_annotations
from sgc_core.datasets.mammo import DatasetLayoutError, read_csv_rows

#: ``sgc train-lesion --format`` values.
FORMATS = ("synthetic", "cbis-ddsm", "vindr-mammo", "inbreast")

Lesion = tuple[str, float, float, float]  # finding, row, col, radius (source pixels)
_SEVERITY = {"malignant": 2, "benign": 1}


def read_lesion_annotations(root: Path, fmt: str, seed: int = 0) -> list[LesionAnnotation]:
    """The views of ``root`` in layout ``fmt``, each with its lesions (or none: normal)."""
    readers = {
        "synthetic": lambda: read_synthetic_annotations(root),
        "cbis-ddsm": lambda: read_cbis_annotations(root, seed=seed),
        "vindr-mammo": lambda: read_vindr_annotations(root, seed=seed),
        "inbreast": lambda: read_inbreast_annotations(root, seed=seed),
    }
    if fmt not in readers:
        raise CropDataError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    try:
        notes = readers[fmt]()
    except DatasetLayoutError as exc:
        raise CropDataError(str(exc)) from None
    if not notes:
        raise CropDataError(f"{root}: no annotated views found in the {fmt} layout")
    return notes


def view_note(path: Path, split: str, patient: str, lesions: Iterable[Lesion]) -> LesionAnnotation:
    """One view's annotation: its worst lesion first, the others kept beside it."""
    ranked = sorted(lesions, key=lambda le: (-_SEVERITY[le[0]], -le[3]))
    if not ranked:
        return LesionAnnotation(str(path), "normal", split, patient_id=patient)
    finding, row, col, radius = ranked[0]
    return LesionAnnotation(
        str(path), finding, split, row, col, radius, patient_id=patient, others=tuple(ranked[1:])
    )


def disc_radius(area: float) -> float:
    """The radius of a disc of ``area`` (at least 2 px: a point lesion still has a place)."""
    return max(math.sqrt(max(area, 0.0) / math.pi), 2.0)


# --- CBIS-DDSM ----------------------------------------------------------------------------


def read_cbis_annotations(root: Path, val_fraction: float = 0.1, seed: int = 0):
    """CBIS-DDSM views with their abnormalities' ROI-mask centres and radii."""
    root = Path(root)
    views = cbis.load_cbis_ddsm(root, val_fraction=val_fraction, seed=seed, missing="skip")
    lesions: dict[Path, list[Lesion]] = {}
    for csv_name in cbis.DESCRIPTION_CSVS.values():
        csv_path = cbis._find_csv(root, csv_name)
        if csv_path is None:
            continue
        for row in read_csv_rows(csv_path, [*cbis.REQUIRED, "ROI mask file path"]):
            full = cbis._resolve_image(root, row["image file path"])
            if full is None:
                continue
            finding = cbis.PATHOLOGY_CLASS[row["pathology"].upper()]
            lesions.setdefault(full, []).append(
                (finding, *_mask_lesion(root, row["ROI mask file path"], full))
            )
    return [
        view_note(item.path, item.split, item.patient_id, lesions.get(item.path, ()))
        for item in views.items
    ]


def _mask_lesion(root: Path, mask_path: str, full: Path) -> tuple[float, float, float]:
    """(row, col, radius) of the ROI mask that belongs to the full image ``full``."""
    mask_file = _resolve_mask(root, mask_path, full)
    mask = pydicom.dcmread(mask_file).pixel_array > 0
    if not mask.any():
        raise DatasetLayoutError(f"{mask_file}: the ROI mask is empty")
    rows, cols = np.nonzero(mask)
    return float(rows.mean()), float(cols.mean()), disc_radius(float(mask.sum()))


def _resolve_mask(root: Path, mask_path: str, full: Path) -> Path:
    """The CSV's path when it exists, else the DICOM in the ROI's folder that has the full
    image's size (TCIA stores the ROI crop and the mask side by side, named 1-1 and 1-2)."""
    rel = Path(mask_path.strip().replace("\\", "/"))
    shape = _shape(full)
    for base in (root, root / "CBIS-DDSM"):
        if (base / rel).is_file() and _shape(base / rel) == shape:
            return base / rel
        folder = base / rel.parts[0]
        if folder.is_dir():
            same = [p for p in sorted(folder.rglob("*.dcm")) if _shape(p) == shape]
            if same:
                return same[0]
    raise DatasetLayoutError(f"no ROI mask of {full.name}'s size for {mask_path!r}")


def _shape(path: Path) -> tuple[int, int]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(ds.Rows), int(ds.Columns)


# --- VinDr-Mammo --------------------------------------------------------------------------

FINDINGS_CSV = "finding_annotations.csv"
VINDR_FINDING_CLASS = {2: "benign", 3: "benign", 4: "malignant", 5: "malignant"}


def read_vindr_annotations(root: Path, val_fraction: float = 0.1, seed: int = 0):
    """VinDr-Mammo views with their findings' boxes as centres and radii."""
    root = Path(root)
    views = vindr.load_vindr_mammo(root, val_fraction=val_fraction, seed=seed, missing="skip")
    csv_path = root / FINDINGS_CSV
    if not csv_path.is_file():
        raise DatasetLayoutError(f"{root}: no {FINDINGS_CSV} (VinDr-Mammo's lesion boxes)")
    boxes: dict[str, list[Lesion]] = {}
    for row in read_csv_rows(csv_path, ["image_id", "finding_birads", "xmin", "xmax"]):
        lesion = _box_lesion(row)
        if lesion is not None:
            boxes.setdefault(row["image_id"], []).append(lesion)
    notes = []
    for item in views.items:
        found = boxes.get(item.metadata["image_id"], [])
        if found or item.metadata["birads"] == 1:
            notes.append(view_note(item.path, item.split, item.patient_id, found))
    return notes


def _box_lesion(row: dict[str, str]) -> Lesion | None:
    """A finding row's lesion, or None for a row without a box or a BI-RADS class."""
    text = (row.get("finding_birads") or "").strip()
    if not text or not all((row.get(k) or "").strip() for k in ("xmin", "ymin", "xmax", "ymax")):
        return None
    finding = VINDR_FINDING_CLASS.get(vindr.parse_birads(text))
    if finding is None:
        return None
    x0, y0, x1, y1 = (float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
    radius = max(max(x1 - x0, y1 - y0) / 2, 2.0)
    return finding, (y0 + y1) / 2, (x0 + x1) / 2, radius


# --- INbreast -----------------------------------------------------------------------------

INBREAST_CLASS = {"1": "normal", "2": "benign", "3": "benign"}
_POINT = re.compile(r"\(\s*([-\d.eE+]+)\s*,\s*([-\d.eE+]+)")


def read_inbreast_annotations(root: Path, seed: int = 0):
    """INbreast views with their XML contours as centres and radii."""
    root = Path(root)
    views = inbreast.load_inbreast(root, seed=seed, missing="skip")
    notes = []
    for item in views.items:
        birads = str(item.metadata["birads"]).strip().lower()
        finding = INBREAST_CLASS.get(birads[:1], "malignant")
        contours = _contours(root / "AllXML" / f"{item.metadata['file_name']}.xml")
        lesions = [(finding, *_polygon(c)) for c in contours] if finding != "normal" else []
        if lesions or finding == "normal":
            notes.append(view_note(item.path, item.split, item.patient_id, lesions))
    return notes


def _contours(xml: Path) -> list[np.ndarray]:
    """Every ROI of three or more points in an INbreast XML, as (N, 2) arrays of (x, y)."""
    if not xml.is_file():
        return []
    try:
        doc = plistlib.loads(xml.read_bytes())
    except (plistlib.InvalidFileException, ValueError) as exc:
        raise DatasetLayoutError(f"{xml}: not a readable INbreast ROI file ({exc})") from None
    out = []
    for image in doc.get("Images", []):
        for roi in image.get("ROIs", []):
            pts = [
                tuple(map(float, m.groups()))
                for p in roi.get("Point_px", [])
                if (m := _POINT.search(str(p)))
            ]
            if len(pts) >= 3:
                out.append(np.array(pts))
    return out


def _polygon(points: np.ndarray) -> tuple[float, float, float]:
    """(row, col, radius) of a contour given as (x, y) points (shoelace area)."""
    x, y = points[:, 0], points[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return float(y.mean()), float(x.mean()), disc_radius(area)
