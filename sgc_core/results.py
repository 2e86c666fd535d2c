"""The typed results of the lesion finder: one per view, one per breast and one per study.

Why one object: the worker stores it, the SR builder draws it, `sgc classify --json` prints it.
If each read the model's raw tensors they would each re-derive geometry and thresholds and
sooner or later disagree. Every location here is in the *source image's* pixel coordinates
(row, col of the stored DICOM pixel data), so a reader sees the mark where the lesion is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Finding:
    """One located finding on one view.

    ``label`` is benign or malignant, ``probability`` is P(label) for this region,
    ``p_malignant`` P(malignant) and ``p_lesion`` P(benign or malignant) for it (window
    posteriors, temperature-calibrated on validation crops); ``centre`` is
    (row, col), ``radius`` in source pixels, ``box`` (row0, col0, row1, col1) half-open and
    clipped to the image, ``outline`` a closed polygon of (row, col) points.
    ``nipple_distance_mm`` is how far behind the nipple it lies along the chest wall-nipple
    axis (None: not measured), the depth a reader matches between the CC and the MLO;
    ``in_partner_view`` whether the other projection of the breast has a finding at that
    depth (None: the view was not read with a partner).
    """

    label: str
    probability: float
    p_malignant: float
    p_lesion: float
    centre: tuple[float, float]
    radius: float
    box: tuple[int, int, int, int]
    outline: tuple[tuple[float, float], ...]
    nipple_distance_mm: float | None = None
    in_partner_view: bool | None = None

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "probability": self.probability,
            "p_malignant": self.p_malignant,
            "p_lesion": self.p_lesion,
            "centre": [round(v, 1) for v in self.centre],
            "radius": round(self.radius, 1),
            "box": list(self.box),
            "outline": [[round(r, 1), round(c, 1)] for r, c in self.outline],
            "nipple_distance_mm": _rounded(self.nipple_distance_mm),
            "in_partner_view": self.in_partner_view,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Finding:
        """A finding back from :meth:`to_dict` (recorded rows are re-read by benchmarks)."""
        return cls(
            label=d["label"],
            probability=d["probability"],
            p_malignant=d["p_malignant"],
            p_lesion=d["p_lesion"],
            centre=tuple(d["centre"]),
            radius=d["radius"],
            box=tuple(d["box"]),
            outline=tuple(tuple(p) for p in d["outline"]),
            nipple_distance_mm=d.get("nipple_distance_mm"),
            in_partner_view=d.get("in_partner_view"),
        )


@dataclass(frozen=True)
class EvidenceMap:
    """Per-pixel evidence for malignancy (nats per pixel, >0 favours malignant over normal).

    ``values`` is on a grid whose pixel (i, j) centre lies at source (origin + (i, j) * step)
    when not ``flipped``; when flipped, columns run from the right edge leftwards. Use
    :meth:`source_point` rather than re-deriving it.
    """

    values: np.ndarray
    origin: tuple[float, float]
    step: tuple[float, float]
    flipped: bool

    def source_point(self, i: float, j: float) -> tuple[float, float]:
        row = self.origin[0] + i * self.step[0]
        col = (
            self.origin[1] - j * self.step[1] if self.flipped else self.origin[1] + j * self.step[1]
        )
        return row, col

    def to_source_grid(self, shape: tuple[int, int]) -> np.ndarray:
        """The map resampled onto a (rows, cols) source-shaped grid (nearest), 0 outside."""
        rows = np.arange(shape[0])
        cols = np.arange(shape[1])
        i = np.round((rows - self.origin[0]) / self.step[0]).astype(int)
        sign = -1.0 if self.flipped else 1.0
        j = np.round(sign * (cols - self.origin[1]) / self.step[1]).astype(int)
        ok_i = (i >= 0) & (i < self.values.shape[0])
        ok_j = (j >= 0) & (j < self.values.shape[1])
        out = np.zeros(shape, dtype=np.float32)
        out[np.ix_(ok_i, ok_j)] = self.values[np.ix_(i[ok_i], j[ok_j])]
        return out


@dataclass(frozen=True)
class ViewResult:
    """A view's result. ``p_malignant`` is None when the view could not be scored (no breast);
    ``ood_reasons`` then says why. ``findings`` are sorted by probability, highest first."""

    p_malignant: float | None
    predicted_class: str
    findings: tuple[Finding, ...]
    evidence: EvidenceMap | None
    ood: bool
    ood_reasons: tuple[str, ...]
    ood_score: float
    laterality: str | None
    view: str | None
    breast_box: tuple[int, int, int, int]
    method: str
    windows: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def ood_reason(self) -> str | None:
        return "; ".join(self.ood_reasons) or None

    def to_dict(self) -> dict:
        return {
            "p_malignant": self.p_malignant,
            "predicted_class": self.predicted_class,
            "findings": [f.to_dict() for f in self.findings],
            "ood": self.ood,
            "ood_reason": self.ood_reason,
            "ood_score": _finite(self.ood_score),
            "laterality": self.laterality,
            "view": self.view,
            "breast_box": list(self.breast_box),
            "method": self.method,
            "windows": self.windows,
        }


@dataclass(frozen=True)
class BreastResult:
    laterality: str
    p_malignant: float | None
    predicted_class: str
    views: int


@dataclass(frozen=True)
class ExamResult:
    """Per breast and per study, as a screening reader reads an exam (calibrated on validation
    breasts and studies); None where no view of it could be scored."""

    breasts: tuple[BreastResult, ...]
    p_malignant: float | None
    predicted_class: str
    operating_point: float

    def to_dict(self) -> dict:
        return {
            "p_malignant": self.p_malignant,
            "predicted_class": self.predicted_class,
            "operating_point": self.operating_point,
            "breasts": [
                {
                    "laterality": b.laterality,
                    "p_malignant": b.p_malignant,
                    "predicted_class": b.predicted_class,
                    "views": b.views,
                }
                for b in self.breasts
            ],
        }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
