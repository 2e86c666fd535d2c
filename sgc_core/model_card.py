"""The model card as one typed, validated object: what every reader of a model agrees on.

Why typed: the card used to be a dict read in some 25 places, and the decision rule was read
two ways (argmax when the card had no operating point in one place, "the last class at 0.5" in
another), so a report's finding and the stored ``predicted_class`` could disagree. Here the card
is parsed once, refused with a message naming the key when it is wrong, and :meth:`decide` is
the one decision rule every reader uses.

The JSON on disk is unchanged (``sgc_core/checkpoint.py`` writes and verifies it); ``data``
keeps the parsed dict so a trainer can extend it and parse again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sgc_core.lesion_card import LesionCard

#: The threshold on P(positive) of a card that names no operating point.
DEFAULT_THRESHOLD = 0.5


class ModelCardError(ValueError):
    """A model card that cannot be used as it is (the message names the key)."""


@dataclass(frozen=True)
class Calibration:
    """Temperature and class priors of the posterior, and the estimator they were fitted for."""

    temperature: float = 1.0
    priors: tuple[float, ...] | None = None
    method: str | None = None


@dataclass(frozen=True)
class OodBand:
    """Bits/dim above ``high`` (or NaN) or below ``low`` is out of distribution."""

    high: float | None = None
    low: float | None = None


@dataclass(frozen=True)
class ModelCard:
    """A model's card: identity, input contract, classes, calibration and decision rule."""

    name: str
    version: str
    sha256: str
    classes: tuple[str, ...]
    positive_class: str
    threshold: float
    channels: int
    image_size: int
    input_range: tuple[float, float] = (0.0, 1.0)
    quantization_levels: int = 256
    calibration: Calibration = Calibration()
    ood: OodBand = OodBand()
    lesion: LesionCard | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Parse and check a card dict; a missing or wrong key raises :class:`ModelCardError`."""
        try:
            return cls(**_fields(data), data=dict(data))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelCardError):
                raise
            raise ModelCardError(f"model card {data.get('name', '?')!r}: {exc}") from None

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive_class)

    @property
    def is_lesion_finder(self) -> bool:
        return self.lesion is not None

    def priors(self) -> list[float]:
        """The class priors (uniform when the card has none)."""
        pri = self.calibration.priors
        return list(pri) if pri else [1.0 / len(self.classes)] * len(self.classes)

    def is_positive(self, p_positive: float) -> bool:
        """The operating point: P(positive) at or above the threshold is a positive finding."""
        return float(p_positive) >= self.threshold

    def decide(self, probabilities: Sequence[float]) -> str:
        """The positive class at the operating point, else the likeliest other class."""
        probs = [float(p) for p in probabilities]
        if self.is_positive(probs[self.positive_index]):
            return self.positive_class
        others = [(p, i) for i, p in enumerate(probs) if i != self.positive_index]
        return self.classes[max(others)[1]] if others else self.positive_class


def _fields(d: Mapping[str, Any]) -> dict[str, Any]:
    """The typed fields of a card dict, each checked."""
    classes = tuple(str(c) for c in d["classes"])
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ModelCardError(f"classes must be two or more distinct names, not {list(classes)}")
    positive = str(d.get("positive_class") or classes[-1])
    if positive not in classes:
        raise ModelCardError(f"positive_class {positive!r} is not one of {list(classes)}")
    lesion = LesionCard.from_dict(d["lesion"]) if d.get("lesion") else None
    _check_trained_band(d, lesion)
    return {
        "name": str(d["name"]),
        "version": str(d.get("version", "0")),
        "sha256": str(d.get("sha256", "")),
        "classes": classes,
        "positive_class": positive,
        "threshold": _threshold(d, lesion),
        "channels": int(d["channels"]),
        "image_size": int(d["image_size"]),
        "input_range": _range(d.get("input_range", (0.0, 1.0))),
        "quantization_levels": int(d.get("quantization_levels", 256)),
        "calibration": _calibration(d.get("calibration") or {}, len(classes)),
        "ood": _ood(d.get("ood") or {}),
        "lesion": lesion,
    }


def _check_trained_band(d: Mapping[str, Any], lesion: LesionCard | None) -> None:
    """A network trained on t <= t_max knows nothing above it: a lesion card may not score
    there, and the whole-view ELBO (which integrates t over [eps, 1]) needs t_max = 1."""
    t_max = float(((d.get("training") or {}).get("config") or {}).get("t_max", 1.0))
    if lesion is None and t_max < 1.0:
        raise ModelCardError(
            f"the network was trained on t <= {t_max} only; the whole-view ELBO needs t up to 1"
        )
    if lesion is not None and lesion.t_range[1] > t_max + 1e-9:
        raise ModelCardError(
            f"the scan band t {list(lesion.t_range)} reaches above the trained t <= {t_max}"
        )


def _threshold(d: Mapping[str, Any], lesion: LesionCard | None) -> float:
    if lesion is not None:
        value = lesion.operating_point
    else:
        op = d.get("operating_point")
        if op is not None and not isinstance(op, Mapping):
            raise ModelCardError("operating_point must be an object with a threshold")
        value = (op or {}).get("threshold", DEFAULT_THRESHOLD)
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ModelCardError(f"operating threshold {value} is outside [0, 1]")
    return value


def _range(value: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not lo < hi:
        raise ModelCardError(f"input_range must be [low, high] with low < high, not {value}")
    return lo, hi


def _calibration(cal: Mapping[str, Any], n_classes: int) -> Calibration:
    priors = cal.get("priors")
    if priors is not None:
        priors = tuple(float(p) for p in priors)
        if len(priors) != n_classes or any(p <= 0 for p in priors):
            raise ModelCardError(f"calibration priors must be {n_classes} positive numbers")
    temperature = float(cal.get("temperature", 1.0))
    if not temperature > 0:
        raise ModelCardError(f"calibration temperature must be positive, not {temperature}")
    return Calibration(temperature, priors, cal.get("method"))


def _ood(ood: Mapping[str, Any]) -> OodBand:
    def num(key: str) -> float | None:
        return None if ood.get(key) is None else float(ood[key])

    return OodBand(num("threshold"), num("threshold_low"))
