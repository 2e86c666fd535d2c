"""The lesion finder's part of a model card, as one typed, validated object.

Why typed: the scan geometry, the noise plan, the calibration and the thresholds are read by
the finder, the calibration fit, the worker and the report; a dict read in many places lets a
misspelt key fall back to a default silently. ``from_dict`` refuses unknown or missing keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Platt:
    """P = sigmoid(a * feature + b), fitted on validation data (a > 0 keeps the ranking)."""

    a: float = 1.0
    b: float = 0.0


@dataclass(frozen=True)
class LesionCard:
    """How a breast is tiled, scored and calibrated (stored under ``card["lesion"]``).

    spacing_mm / crop / stride: the scan grid and its windows (scan pixels).
    t_range, k_coarse, k_fine, seed: the shared noise plans of the coarse pass (every window)
        and the fine pass (the ``refine_top`` best candidates).
    temperature_coarse / temperature_fine / priors: window posterior over the crop classes.
    middle_windows, k_middle: a middle stage between the two (0 windows = none): the
        ``middle_windows`` least-normal windows of the coarse pass get ``k_middle`` more pairs,
        and the candidates are chosen among them, so a lesion's window is not lost to one
        noisy draw at a fraction of the cost of more pairs for every window.
    locate_sigma: where a refined candidate is placed: 0, at its peak on the coarse evidence
        map (one pair per window); above 0, at the peak of its own window's fine-pass
        evidence (``k_fine`` pairs) for its most likely lesion class, smoothed with a Gaussian
        of this many scan pixels (sgc_core/lesion_locate.py). Its probabilities do not change.
    locate_reach: with ``locate_sigma`` set, how far (scan pixels) the fine peak may lie from
        the coarse one, the refined window's centre; 0 = anywhere in the window.
    finding_threshold: a candidate is reported when its P(benign or malignant) reaches it.
    view_feature: what the view map reads: "alone", the view's top candidate's malignant
        log-odds; "pair", their mean with the other projection of the same breast
        (sgc_core/view_pairs.py), which a breast's feature then is too.
    finding_order: which finding comes first: "alone", by its P(lesion); "pair", by its
        P(lesion) + ``pair_weight`` x the best P(lesion) of a finding of the other projection
        of the breast within ``pair_depth_mm`` of its distance from the nipple.
    view, breast, study: Platt maps from that feature to P(malignant).
    operating_point: threshold on a view's P(malignant) (90 % sensitivity on validation);
        exam_operating_point the same on a study's.
    ood_low / ood_high: the per-pixel denoising-error band of validation mammograms.
    """

    classes: tuple[str, ...] = ("normal", "benign", "malignant")
    spacing_mm: float = 0.4
    crop: int = 64
    stride: int = 32
    t_range: tuple[float, float] = (0.02, 0.5)
    k_coarse: int = 1
    k_fine: int = 8
    seed: int = 0
    refine_top: int = 3
    middle_windows: int = 0
    k_middle: int = 3
    max_findings: int = 3
    min_breast_fraction: float = 0.25
    temperature_coarse: float = 1.0
    temperature_fine: float = 1.0
    priors: tuple[float, ...] = (0.5, 0.25, 0.25)
    finding_threshold: float = 0.5
    locate_sigma: float = 0.0
    locate_reach: float = 0.0
    view_feature: str = "alone"
    finding_order: str = "alone"
    pair_depth_mm: float = 10.0
    pair_weight: float = 0.5
    view: Platt = field(default_factory=Platt)
    breast: Platt = field(default_factory=Platt)
    study: Platt = field(default_factory=Platt)
    operating_point: float = 0.5
    exam_operating_point: float = 0.5
    ood_low: float | None = None
    ood_high: float | None = None
    max_batch: int = 192

    def __post_init__(self) -> None:
        if tuple(self.classes[:1]) != ("normal",) or "malignant" not in self.classes:
            raise ValueError(
                f"lesion classes must start with normal and hold malignant: {self.classes}"
            )
        if len(self.priors) != len(self.classes) or min(self.priors) <= 0:
            raise ValueError(f"need one positive prior per class {self.classes}, got {self.priors}")
        if self.crop < 16 or self.crop % 8 or not 0 < self.stride <= self.crop:
            raise ValueError(f"crop {self.crop} (multiple of 8, >= 16) and stride {self.stride}")
        if self.spacing_mm <= 0 or self.k_coarse < 1 or self.k_fine < 1:
            raise ValueError("spacing_mm, k_coarse and k_fine must be positive")
        if self.middle_windows < 0 or self.k_middle < 1:
            raise ValueError("middle_windows must be >= 0 and k_middle >= 1")
        if self.view_feature not in ("alone", "pair"):
            raise ValueError(f"view_feature is 'alone' or 'pair', got {self.view_feature!r}")
        if self.finding_order not in ("alone", "pair"):
            raise ValueError(f"finding_order is 'alone' or 'pair', got {self.finding_order!r}")
        if self.locate_sigma < 0:
            raise ValueError(f"locate_sigma must be >= 0, got {self.locate_sigma}")
        if self.locate_reach < 0:
            raise ValueError(f"locate_reach must be >= 0, got {self.locate_reach}")
        if self.pair_depth_mm <= 0 or self.pair_weight < 0:
            raise ValueError("pair_depth_mm must be positive and pair_weight >= 0")

    @property
    def malignant(self) -> int:
        return self.classes.index("malignant")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LesionCard:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown lesion-finder settings in model card: {sorted(unknown)}")
        d = dict(data)
        for key in ("view", "breast", "study"):
            if key in d and isinstance(d[key], dict):
                d[key] = Platt(**d[key])
        for key in ("classes", "t_range", "priors"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def replace(self, **changes: Any) -> LesionCard:
        return dataclasses.replace(self, **changes)

    def with_settings(self, settings: list[str]) -> LesionCard:
        """This card with ``KEY=VALUE`` number settings changed (a scan choice made on
        validation); an unknown key or a non-number is refused in one line (ValueError)."""
        changes: dict[str, Any] = {}
        for setting in settings:
            key, sep, value = setting.partition("=")
            current = getattr(self, key, None)
            if not sep or not isinstance(current, int | float) or isinstance(current, bool):
                raise ValueError(f"{setting!r}: expected KEY=VALUE with KEY a number of the card")
            try:
                changes[key] = type(current)(value)
            except ValueError:
                raise ValueError(f"{setting!r}: {value!r} is not a number for {key}") from None
        return self.replace(**changes)
