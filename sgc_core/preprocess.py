"""From a DICOM mammogram to the model's tensor: one function for training and for serving.

The order follows the DICOM grayscale pipeline (PS3.4 N.2): stored values -> Modality LUT ->
VOI LUT -> Presentation LUT (MONOCHROME1 is inverted), then the image-analysis steps: crop to
the breast (threshold + largest connected component), flip so every breast has its chest wall
on the same side, resize with anti-aliasing (aspect kept, padded away from the chest wall),
optional CLAHE, and scaling. Every parameter lives in :class:`PreprocessConfig`, which the model
card stores under ``"preprocess"``: serving rebuilds the config from the card, so it can never
disagree with training.

MONOCHROME1 is handled by inverting the modality values and mirroring the window *before* the
VOI step (``x -> lo + hi - x``, with the window centre mirrored the way the VOI function's own
formula requires). That is the same image as "VOI then invert", but it runs the very same
floating-point operations as the equivalent MONOCHROME2 encoding, so the two give bit-identical
tensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydicom
import torch
from pydicom.dataset import Dataset

from sgc_core.input_checks import MAMMOGRAPHY_MODALITIES, input_ood_reasons, whole_breast_view
from sgc_core.pixels import PreprocessError, presentation_values
from sgc_core.view_meta import chest_wall_side, image_laterality, view_position


@dataclass(frozen=True)
class PreprocessConfig:
    """Every parameter of the image -> tensor mapping (stored verbatim in the model card).

    image_size: output (height, width); an int means a square.
    channels: 1, or 3 (the gray image repeated, for ImageNet-shaped networks).
    scaling: "[-1,1]" (score models) or "[0,1]".
    voi: "auto" (VOI LUT Sequence, else the first window, else min-max), "window" (first
        window, else min-max), "lut" (VOI LUT Sequence, else window, else min-max) or
        "minmax" (ignore the file's VOI and stretch the modality values' range).
    crop: crop to the bounding box of the largest bright component.
    crop_threshold: the breast is where the VOI-mapped [0, 1] image exceeds this.
    mask_background: zero the pixels outside the breast component (markers, labels).
    flip_to: the side every chest wall is moved to ("left": all breasts look like a standard
        left-breast view, chest wall at column 0, nipple pointing right), or None.
    keep_aspect: resize keeping the aspect ratio and pad; False stretches to image_size.
    clahe: contrast-limited adaptive histogram equalisation (the paper used it).
    modality_policy: "refuse" raises PreprocessError for a non-MG image; "ood" processes it
        anyway and reports the modality, so the classifier can flag it out of distribution.
    """

    image_size: tuple[int, int] = (256, 256)
    channels: int = 1
    scaling: Literal["[-1,1]", "[0,1]"] = "[-1,1]"
    voi: Literal["auto", "window", "lut", "minmax"] = "auto"
    crop: bool = True
    crop_threshold: float = 0.05
    mask_background: bool = True
    flip_to: Literal["left", "right"] | None = "left"
    keep_aspect: bool = True
    clahe: bool = False
    clahe_clip_limit: float = 0.01
    clahe_kernel_size: int | None = None
    clahe_nbins: int = 256
    modality_policy: Literal["refuse", "ood"] = "ood"
    version: int = field(default=1)

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, int):
            object.__setattr__(self, "image_size", (size, size))
        elif isinstance(size, list | tuple) and len(size) == 2:
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        else:
            raise ValueError(f"image_size must be an int or (height, width), not {size!r}")
        if min(self.image_size) < 8:
            raise ValueError(f"image_size {self.image_size} is too small (min 8)")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if self.scaling not in ("[-1,1]", "[0,1]"):
            raise ValueError(f"scaling must be '[-1,1]' or '[0,1]', not {self.scaling!r}")
        if self.voi not in ("auto", "window", "lut", "minmax"):
            raise ValueError(f"voi must be auto|window|lut|minmax, not {self.voi!r}")
        if self.flip_to not in ("left", "right", None):
            raise ValueError(f"flip_to must be 'left', 'right' or None, not {self.flip_to!r}")
        if self.modality_policy not in ("refuse", "ood"):
            raise ValueError(
                f"modality_policy must be 'refuse' or 'ood', not {self.modality_policy!r}"
            )
        if not 0.0 <= self.crop_threshold < 1.0:
            raise ValueError(f"crop_threshold must be in [0, 1), not {self.crop_threshold}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the model card."""
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped,
        because a card written by a newer version must not be served with different maths."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing parameters in model card: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class ViewFacts:
    """What reading one view learned besides its pixels, for the caller's report: its side,
    view, modality, photometric interpretation, whether a breast was found, and
    ``ood_reasons``: why the input is not a mammogram, in words (``sgc_core.input_checks``);
    empty for a plausible mammogram. The classifier flags any image that has one.

    Why a base class: the classifier's input (:class:`Preprocessed`) and the lesion finder's
    (``sgc_core.scan_geometry.ScanImage``) carry the same facts, read the same way.
    """

    laterality: str | None
    view: str | None
    modality: str | None
    photometric: str
    breast_found: bool
    ood_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preprocessed(ViewFacts):
    """The model input and what the caller needs to report it (:class:`ViewFacts`).

    bbox: the breast's box in ORIGINAL pixel coordinates (row0, col0, row1, col1), half-open,
        before any flip, for the SR's region of interest.
    """

    tensor: torch.Tensor
    bbox: tuple[int, int, int, int]
    flipped: bool


def preprocess_file(path: str | Path, config: PreprocessConfig) -> Preprocessed:
    """Read a DICOM file and preprocess it."""
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError) as exc:
        raise PreprocessError(f"{path}: not a readable DICOM file ({exc})") from exc
    return preprocess_dataset(ds, config)


def preprocess_dataset(ds: Dataset, config: PreprocessConfig) -> Preprocessed:
    """The whole pipeline for one image (see the module docstring for the order).

    Malformed attribute values (e.g. a multi-valued Rows from a broken sender) end as a
    PreprocessError naming the cause, like every other image the model cannot take: the
    image is then recorded as not classified instead of crashing the job.
    """
    with malformed_as_preprocess_error():
        return _preprocess_dataset(ds, config)


@contextlib.contextmanager
def malformed_as_preprocess_error() -> Iterator[None]:
    """A malformed attribute value (the errors pydicom and numpy raise for one) as a
    PreprocessError naming it; for the classifier's and the lesion finder's readers alike."""
    try:
        yield
    except PreprocessError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        raise PreprocessError(f"malformed image attributes: {type(exc).__name__}: {exc}") from exc


def _preprocess_dataset(ds: Dataset, config: PreprocessConfig) -> Preprocessed:
    modality = str(ds.get("Modality", "") or "").upper() or None
    if modality not in MAMMOGRAPHY_MODALITIES and config.modality_policy == "refuse":
        raise PreprocessError(
            f"modality {modality or '(missing)'} is not mammography (MG); "
            "set modality_policy='ood' to score it as out of distribution instead"
        )
    image = presentation_values(ds, config.voi)
    laterality = image_laterality(ds)
    view = view_position(ds)

    mask = breast_mask(image, config.crop_threshold)
    breast_found = bool(mask is not None)
    ood_reasons = input_ood_reasons(image, mask, modality, whole_breast_view(ds))
    rows, cols = image.shape
    if config.crop and mask is not None:
        r0, c0, r1, c1 = _bbox(mask)
        if config.mask_background:
            image = np.where(mask, image, 0.0)
        image = image[r0:r1, c0:c1]
    else:
        r0, c0, r1, c1 = 0, 0, rows, cols

    flipped = False
    if config.flip_to is not None and modality in MAMMOGRAPHY_MODALITIES:
        side = chest_wall_side(ds, image)
        if side is not None and side != config.flip_to:
            image = image[:, ::-1]
            flipped = True

    out = _resize(image, config.image_size, config.keep_aspect, anchor=config.flip_to or "left")
    if config.clahe:
        from skimage.exposure import equalize_adapthist

        out = equalize_adapthist(
            np.clip(out, 0.0, 1.0),
            kernel_size=config.clahe_kernel_size,
            clip_limit=config.clahe_clip_limit,
            nbins=config.clahe_nbins,
        )
    if config.scaling == "[-1,1]":
        out = out * 2.0 - 1.0
    tensor = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))[None]
    if config.channels == 3:
        tensor = tensor.expand(3, -1, -1).contiguous()
    return Preprocessed(
        tensor=tensor,
        bbox=(int(r0), int(c0), int(r1), int(c1)),
        flipped=flipped,
        laterality=laterality,
        view=view,
        modality=modality,
        photometric=str(ds.PhotometricInterpretation),
        breast_found=breast_found,
        ood_reasons=ood_reasons,
    )


# --- crop, resize --------------------------------------------------------------------------


def breast_mask(image: np.ndarray, threshold: float) -> np.ndarray | None:
    """The largest connected bright region (the breast), or None on a blank image.

    Markers and text burnt into the background are smaller components and are dropped.
    """
    from scipy import ndimage

    binary = image > threshold
    if not binary.any():
        return None
    labels, n = ndimage.label(binary)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    if largest.sum() < 0.001 * image.size:
        return None
    # Fill holes (fatty regions below the threshold inside the breast): everything not
    # connected to the image border through non-breast pixels. Two labelings are ~5x faster
    # than binary_fill_holes' iterated dilation on a full-field image.
    outside, _ = ndimage.label(~largest)
    border = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    is_background = np.zeros(int(outside.max()) + 1, dtype=bool)
    is_background[border[border > 0]] = True
    return ~is_background[outside]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _resize(image: np.ndarray, size: tuple[int, int], keep_aspect: bool, anchor: str) -> np.ndarray:
    """Anti-aliased resize; with keep_aspect, pad with 0 on the side away from ``anchor``.

    Large integer factors are first reduced by block averaging (exact area anti-aliasing and
    ~10x faster than a Gaussian on a full-field image), the remainder by skimage.
    """
    from skimage.transform import resize

    height, width = size
    if keep_aspect:
        scale = min(height / image.shape[0], width / image.shape[1])
        target = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    else:
        target = (height, width)
    factor = min(image.shape[0] // target[0], image.shape[1] // target[1])
    if factor >= 2:
        r = image.shape[0] // factor * factor
        c = image.shape[1] // factor * factor
        image = image[:r, :c].reshape(r // factor, factor, c // factor, factor).mean(axis=(1, 3))
    if image.shape != target:
        image = resize(image, target, order=1, anti_aliasing=True, preserve_range=True)
    if not keep_aspect:
        return image
    out = np.zeros((height, width), dtype=np.float64)
    top = (height - target[0]) // 2
    if anchor == "right":
        out[top : top + target[0], width - target[1] :] = image
    else:
        out[top : top + target[0], : target[1]] = image
    return out
