"""A mammogram at a fixed physical resolution, and the exact map back to its source pixels.

Why: a lesion's margin is a fraction of a millimetre, so the lesion finder looks at tissue at a
fixed spacing (0.4 mm per pixel by default) whatever the detector (50-100 um), instead of a
whole breast shrunk to a thumbnail. Every finding and evidence map is computed on this grid
and must be reported where a reader looks, on the *source* image: :class:`ScanGeometry` holds
the one affine map (crop to the breast, optional left-right flip, resample) and its inverse, so
no caller re-derives it.

The grayscale steps (Modality LUT, VOI, MONOCHROME1) are those of :mod:`sgc_core.preprocess`,
so both MONOCHROME1 and MONOCHROME2 encodings of one image give the same scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from sgc_core.input_checks import MAMMOGRAPHY_MODALITIES, input_ood_reasons, whole_breast_view
from sgc_core.pixels import presentation_values
from sgc_core.preprocess import ViewFacts, breast_mask, malformed_as_preprocess_error
from sgc_core.view_meta import chest_wall_side, image_laterality, view_position

#: Assumed detector height when an image carries no pixel spacing at all (a typical 24 x 30 cm
#: mammography detector); the result then says the spacing was assumed.
ASSUMED_FIELD_HEIGHT_MM = 240.0


@dataclass(frozen=True)
class ScanGeometry:
    """Scan pixel (row, col) <-> source pixel (row, col); pixel centres, floating point.

    ``box`` is the breast's bounding box in the source (row0, col0, row1, col1), half-open;
    ``step`` the source pixels per scan pixel along (rows, cols); ``flipped`` whether the scan
    is mirrored left-right relative to the source (chest wall moved to column 0).
    """

    box: tuple[int, int, int, int]
    step: tuple[float, float]
    flipped: bool
    source_shape: tuple[int, int]

    def to_source(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r0, c0, _, c1 = self.box
        src_r = r0 + (np.asarray(rows, dtype=np.float64) + 0.5) * self.step[0] - 0.5
        crop_c = (np.asarray(cols, dtype=np.float64) + 0.5) * self.step[1] - 0.5
        src_c = (c1 - 1 - crop_c) if self.flipped else (c0 + crop_c)
        return src_r, src_c

    def to_scan(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r0, c0, _, c1 = self.box
        crop_c = (
            (c1 - 1 - np.asarray(cols, dtype=np.float64))
            if self.flipped
            else (np.asarray(cols, dtype=np.float64) - c0)
        )
        scan_r = (np.asarray(rows, dtype=np.float64) - r0 + 0.5) / self.step[0] - 0.5
        scan_c = (crop_c + 0.5) / self.step[1] - 0.5
        return scan_r, scan_c

    def length_to_source(self, scan_pixels: float) -> float:
        """A length along the scan grid (e.g. a radius) in source pixels (mean of both axes)."""
        return float(scan_pixels * 0.5 * (self.step[0] + self.step[1]))


@dataclass(frozen=True)
class ScanImage(ViewFacts):
    """One view on the scan grid: ``image`` in [0, 1] (1 = dense), ``mask`` the breast, and
    what was read from it besides (:class:`sgc_core.preprocess.ViewFacts`).

    ``spacing_mm`` is the scan grid's spacing; ``spacing_assumed`` is True when the source had
    no pixel spacing and :data:`ASSUMED_FIELD_HEIGHT_MM` was used.
    """

    image: np.ndarray
    mask: np.ndarray
    geometry: ScanGeometry
    spacing_mm: float
    spacing_assumed: bool


def source_spacing(ds: Dataset) -> tuple[tuple[float, float], bool]:
    """(row, col) spacing in mm: PixelSpacing, else ImagerPixelSpacing, else assumed."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col):
            return (row, col), False
    rows = int(ds.get("Rows", 0) or 0)
    assumed = ASSUMED_FIELD_HEIGHT_MM / max(rows, 1)
    return (assumed, assumed), True


def scan_dataset(ds: Dataset, spacing_mm: float = 0.4, crop_threshold: float = 0.05) -> ScanImage:
    """Read, window, crop to the breast, put the chest wall at column 0 and resample.

    An image without a breast (blank, or not a mammogram) is still returned, whole, with
    ``breast_found`` False, so the caller gives it a defined result instead of failing.
    """
    with malformed_as_preprocess_error():
        return _scan_dataset(ds, spacing_mm, crop_threshold)


def _scan_dataset(ds: Dataset, spacing_mm: float, crop_threshold: float) -> ScanImage:
    modality = str(ds.get("Modality", "") or "").upper() or None
    image = presentation_values(ds)
    mask = breast_mask(image, crop_threshold)
    reasons = input_ood_reasons(image, mask, modality, whole_breast_view(ds))
    full = np.ones(image.shape, dtype=bool)
    r0, c0, r1, c1 = _bbox(mask if mask is not None else full)
    region = np.where(mask, image, 0.0)[r0:r1, c0:c1] if mask is not None else image
    region_mask = (mask if mask is not None else full)[r0:r1, c0:c1]
    flipped = False
    if modality in MAMMOGRAPHY_MODALITIES and chest_wall_side(ds, region) == "right":
        region, region_mask, flipped = region[:, ::-1], region_mask[:, ::-1], True
    (sr, sc), assumed = source_spacing(ds)
    scan, step = resample(region, (sr, sc), spacing_mm)
    scan_mask = resample(region_mask.astype(np.float64), (sr, sc), spacing_mm)[0] > 0.5
    geometry = ScanGeometry((r0, c0, r1, c1), step, flipped, image.shape)
    return ScanImage(
        image=scan.astype(np.float32),
        mask=scan_mask,
        geometry=geometry,
        spacing_mm=spacing_mm,
        spacing_assumed=assumed,
        laterality=image_laterality(ds),
        view=view_position(ds),
        modality=modality,
        photometric=str(ds.get("PhotometricInterpretation", "")),
        breast_found=mask is not None,
        ood_reasons=reasons,
    )


def resample(
    image: np.ndarray, spacing: tuple[float, float], target_mm: float
) -> tuple[np.ndarray, tuple[float, float]]:
    """Area-average ``image`` to ``target_mm`` per pixel; returns it and source px per scan px.

    An integer block mean does most of the reduction (exact area anti-aliasing, fast on a
    full-field image); a bilinear resize with anti-aliasing does the rest. The returned step
    is exact for the whole (edge-padded) extent, which is what :class:`ScanGeometry` needs.
    """
    from skimage.measure import block_reduce
    from skimage.transform import resize

    factor = max(1, int(min(target_mm / spacing[0], target_mm / spacing[1])))
    if factor > 1:
        image = block_reduce(image, (factor, factor), np.mean, func_kwargs={"dtype": np.float64})
        # block_reduce pads with zeros: the last partial block is averaged with zeros, which
        # only darkens a sub-millimetre border strip.
    covered = (image.shape[0] * factor, image.shape[1] * factor)
    target = (
        max(1, round(covered[0] * spacing[0] / target_mm)),
        max(1, round(covered[1] * spacing[1] / target_mm)),
    )
    if target != image.shape:
        image = resize(image, target, order=1, anti_aliasing=True, preserve_range=True)
    return image, (covered[0] / target[0], covered[1] / target[1])


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
