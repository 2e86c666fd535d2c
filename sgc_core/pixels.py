"""Stored pixel values to presentation values: the DICOM grayscale pipeline (PS3.4 N.2).

Why a module of its own: the whole-view preprocessing (sgc_core/preprocess.py), the lesion
finder's scan geometry and the phantom gallery all need the same presentation values
(Modality LUT, VOI LUT or window, MONOCHROME1 inverted), and none of them needs the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

SUPPORTED_PHOTOMETRIC = frozenset({"MONOCHROME1", "MONOCHROME2"})


class PreprocessError(ValueError):
    """An image the preprocessing cannot turn into a tensor; the message says why."""


def stored_pixels(ds: Dataset) -> np.ndarray:
    """Decoded stored values of one frame (the middle frame of a multi-frame image)."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise PreprocessError("the dataset has no pixel data (7FE0,0010)")
    photometric = str(ds.get("PhotometricInterpretation", "") or "")
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise PreprocessError(
            f"unsupported photometric interpretation {photometric or '(missing)'}: "
            "only MONOCHROME1 and MONOCHROME2 grayscale images can be classified"
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows == 0 or cols == 0:
        raise PreprocessError(f"zero-size image ({rows} x {cols})")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise PreprocessError("grayscale images must have SamplesPerPixel 1")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # decoders raise many types; the user needs the cause
        tsuid = ds.file_meta.get("TransferSyntaxUID", "?") if hasattr(ds, "file_meta") else "?"
        raise PreprocessError(
            f"cannot decode the pixel data (transfer syntax {tsuid}): {exc}"
        ) from exc
    if pixels.ndim == 3:
        pixels = pixels[pixels.shape[0] // 2]
    if pixels.size == 0:
        raise PreprocessError("zero-size image (no pixels decoded)")
    return pixels


def presentation_values(ds: Dataset, voi: str = "auto") -> np.ndarray:
    """Modality LUT + VOI + Presentation LUT -> float64 image in [0, 1], 1 = bright (dense)."""
    stored = stored_pixels(ds)
    values, lo, hi = _modality_values(ds, stored)
    inverted = str(ds.PhotometricInterpretation) == "MONOCHROME1"
    if inverted:
        values = (lo + hi) - values

    lut_item = _first_item(ds.get("VOILUTSequence")) if voi in ("auto", "lut") else None
    if lut_item is not None and "LUTData" in lut_item:
        out = _apply_voi_lut_sequence(lut_item, (lo + hi) - values if inverted else values)
        return 1.0 - out if inverted else out

    if voi != "minmax" and "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(_first_value(ds.WindowCenter))
        width = float(_first_value(ds.WindowWidth))
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if width <= 0 or (function == "LINEAR" and width < 1):
            raise PreprocessError(f"invalid VOI window width {width}")
        if inverted:
            # Mirror the centre so that window(lo+hi-x; c') == 1 - window(x; c) exactly.
            center = (lo + hi) - center + (1.0 if function == "LINEAR" else 0.0)
        return _window(values, center, width, function)

    vmin, vmax = float(values.min()), float(values.max())
    if vmax <= vmin:
        return np.zeros_like(values)
    return (values - vmin) / (vmax - vmin)


def _modality_values(ds: Dataset, stored: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Rescale slope/intercept (or a Modality LUT Sequence) and the range a value can take."""
    bits = int(ds.get("BitsStored", 16) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    smin, smax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    lut_item = _first_item(ds.get("ModalityLUTSequence"))
    if lut_item is not None and "LUTData" in lut_item:
        table, first, _ = _lut_table(lut_item)
        idx = np.clip(stored.astype(np.int64) - first, 0, len(table) - 1)
        return table[idx].astype(np.float64), float(table.min()), float(table.max())
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    values = stored.astype(np.float64) * slope + intercept
    ends = sorted((smin * slope + intercept, smax * slope + intercept))
    return values, ends[0], ends[1]


def _window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """VOI window to [0, 1] (PS3.3 C.11.2.1.2 and C.11.2.1.3)."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0)
    if function != "LINEAR":
        raise PreprocessError(f"unsupported VOI LUT function {function}")
    return np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0)


def _lut_table(item: Dataset) -> tuple[np.ndarray, int, int]:
    descriptor = [int(v) for v in item.LUTDescriptor]
    n_entries = descriptor[0] or 65536
    first = descriptor[1]
    bits = descriptor[2]
    raw = item.LUTData
    if isinstance(raw, bytes):
        dtype = np.uint8 if bits <= 8 and len(raw) == n_entries else np.uint16
        table = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        table = np.asarray(raw if isinstance(raw, list | tuple | np.ndarray) else [raw])
    if first >= 2**15 and descriptor[1] != first - 2**16:
        first = first - 2**16  # a signed first-value written as unsigned
    return table.astype(np.float64)[:n_entries], first, bits


def _apply_voi_lut_sequence(item: Dataset, values: np.ndarray) -> np.ndarray:
    table, first, bits = _lut_table(item)
    idx = np.clip(np.round(values).astype(np.int64) - first, 0, len(table) - 1)
    return table[idx] / float(2**bits - 1)


def _first_item(seq: Any) -> Dataset | None:
    return seq[0] if seq else None


def _first_value(value: Any) -> Any:
    return value[0] if isinstance(value, pydicom.multival.MultiValue | list | tuple) else value


# --- laterality, view and orientation -----------------------------------------------------
