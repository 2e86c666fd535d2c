"""Which breast and which view an image shows, and on which side its chest wall lies.

Why apart from the pixels: these read only the header (and, as a last resort, the image's
brightness), and the lesion finder and the whole-view preprocessing both orient by them.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from sgc_core.pixels import _first_item

# ViewCodeSequence codes (SNOMED-RT ids used by DICOM CID 4014) for the views we name.
_VIEW_CODES = {
    "R-10242": "CC",
    "399162004": "CC",
    "R-10226": "MLO",
    "399368009": "MLO",
    "R-10224": "ML",
    "399260004": "ML",
    "R-10228": "LM",
    "399352003": "LM",
    "R-102D0": "XCCL",
    "399192003": "XCCL",
}


def image_laterality(ds: Dataset) -> str | None:
    """ImageLaterality, else the series Laterality ("L", "R", "B" or None)."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R", "B", "U"):
            return value
    return None


def view_position(ds: Dataset) -> str | None:
    """ViewPosition, else the first ViewCodeSequence code, as "CC", "MLO", ... or None."""
    value = str(ds.get("ViewPosition", "") or "").strip().upper()
    if value:
        return value
    item = _first_item(ds.get("ViewCodeSequence"))
    if item is not None:
        return _VIEW_CODES.get(str(item.get("CodeValue", "")))
    return None


def chest_wall_side(ds: Dataset, image: np.ndarray | None = None) -> str | None:
    """Which image side ("left" = column 0) holds the chest wall.

    PatientOrientation's row direction says where the image's right edge points: "A"
    (anterior, toward the nipple) means the chest wall is on the left; "P" on the right.
    Without it, the DICOM hanging convention for the laterality is assumed (a right breast
    has its chest wall on the right). Without both, the brighter half of the image wins,
    because the breast is thickest at the chest wall.
    """
    orientation = ds.get("PatientOrientation")
    if orientation and len(orientation) >= 1:
        row_dir = str(orientation[0]).upper()
        if row_dir.startswith("A"):
            return "left"
        if row_dir.startswith("P"):
            return "right"
    laterality = image_laterality(ds)
    if laterality == "L":
        return "left"
    if laterality == "R":
        return "right"
    if image is not None and image.size:
        half = image.shape[1] // 2
        left, right = image[:, :half].sum(), image[:, image.shape[1] - half :].sum()
        if left != right:
            return "left" if left > right else "right"
    return None
