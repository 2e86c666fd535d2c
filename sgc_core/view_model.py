"""One interface over the node's two kinds of model: DICOM views in, typed view results out.

Why: the worker, `sgc classify` and the reports must not care whether a card describes the
lesion finder (crops at 0.4 mm, located findings, evidence map) or a whole-view classifier
(the generic engine's models, e.g. those `sgc train` makes from an image folder). Both answer
``classify(datasets) -> [ViewResult | error message]`` and ``exam(results)``; which one a card
is, is decided once, here, by whether it has a ``lesion`` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from pydicom.dataset import Dataset

from sgc_core.batching import DEFAULT_MEMORY_MB
from sgc_core.checkpoint import load_model
from sgc_core.exam import exam_result
from sgc_core.inference import Classifier
from sgc_core.lesion_scan import LesionScanner
from sgc_core.model_card import ModelCard
from sgc_core.preprocess import PreprocessConfig, PreprocessError, preprocess_dataset
from sgc_core.results import ExamResult, ViewResult
from sgc_core.scan_geometry import scan_dataset
from sgc_core.sde import sde_from_dict
from sgc_core.view_pairs import read_in_pairs


@dataclass(frozen=True)
class ModelIdentity:
    """What a report names: the card's name, version, weights digest and operating point."""

    name: str
    version: str
    sha256: str
    operating_point: float


class ViewModel(Protocol):
    card: ModelCard
    identity: ModelIdentity

    def classify(self, datasets: Sequence[Dataset]) -> list[ViewResult | str]: ...

    def exam(self, results: Sequence[ViewResult]) -> ExamResult | None: ...


def _identity(card: ModelCard) -> ModelIdentity:
    return ModelIdentity(card.name, card.version, card.sha256, card.threshold)


class LesionFinder:
    """The lesion finder behind the ViewModel interface."""

    def __init__(
        self,
        model: torch.nn.Module,
        card: dict,
        device: str = "cpu",
        memory_mb: float = DEFAULT_MEMORY_MB,
    ) -> None:
        self.card = ModelCard.from_dict(card)
        assert self.card.lesion is not None, "a lesion finder's card has a lesion section"
        self.lesion = self.card.lesion
        self.scanner = LesionScanner(
            model, sde_from_dict(card["sde"]), self.lesion, device, memory_mb
        )
        self.identity = _identity(self.card)

    def classify(self, datasets: Sequence[Dataset]) -> list[ViewResult | str]:
        """Each view scanned alone, then read with its partner views of the same study
        (where the card says so); a view that cannot be read gets its error message."""
        out: list[ViewResult | str] = []
        for ds in datasets:
            try:
                scan = scan_dataset(ds, self.lesion.spacing_mm)
            except PreprocessError as exc:
                out.append(str(exc))
                continue
            out.append(self.scanner.scan(scan))
        done = [i for i, r in enumerate(out) if not isinstance(r, str)]
        studies = [str(datasets[i].get("StudyInstanceUID", "")) for i in done]
        paired = read_in_pairs([out[i] for i in done], studies, self.lesion)
        for i, r in zip(done, paired, strict=True):
            out[i] = r
        return out

    def exam(self, results: Sequence[ViewResult]) -> ExamResult | None:
        return exam_result(results, self.lesion)


class WholeViewModel:
    """A whole-view classifier (no localisation): its result's findings are empty."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.card = classifier.card
        self.positive = self.card.positive_class
        self.identity = _identity(self.card)
        self.config = preprocess_config(self.card)

    def classify(self, datasets: Sequence[Dataset]) -> list[ViewResult | str]:
        pres: list = []
        for ds in datasets:
            try:
                pres.append(preprocess_dataset(ds, self.config))
            except PreprocessError as exc:
                pres.append(str(exc))
        ok = [p for p in pres if not isinstance(p, str)]
        results = iter(
            self.classifier.classify(
                torch.stack([p.tensor for p in ok]), [p.ood_reasons for p in ok]
            )
            if ok
            else []
        )
        return [p if isinstance(p, str) else self._view(p, next(results)) for p in pres]

    def _view(self, pre, r) -> ViewResult:
        return ViewResult(
            p_malignant=float(r.probabilities[self.positive]),
            predicted_class=r.predicted_class,
            findings=(),
            evidence=None,
            ood=bool(r.ood),
            ood_reasons=tuple(s for s in (r.ood_reason or "").split("; ") if s),
            ood_score=float(r.ood_score),
            laterality=pre.laterality,
            view=pre.view,
            breast_box=pre.bbox,
            method=r.method,
            extra={
                "probabilities": dict(r.probabilities),
                "log_likelihoods": dict(r.log_likelihoods),
                "bits_per_dim": r.bits_per_dim,
            },
        )

    def exam(self, results: Sequence[ViewResult]) -> ExamResult | None:
        return None


def preprocess_config(card: ModelCard) -> PreprocessConfig:
    """A whole-view card's preprocessing, completed with what its input contract fixes."""
    data = dict(card.data.get("preprocess") or {})
    size = card.image_size
    data.setdefault("image_size", [size, size])
    data.setdefault("channels", card.channels)
    data.setdefault("scaling", "[0,1]")
    config = PreprocessConfig.from_dict(data)
    if tuple(config.image_size) != (size, size) or config.scaling != "[0,1]":
        raise ValueError(
            f"model card preprocessing {config.image_size} {config.scaling} does not match the "
            f"model input ({size}x{size}, [0,1])"
        )
    return config


def load_view_model(
    path: str | Path, device: str = "cpu", memory_mb: float = DEFAULT_MEMORY_MB
) -> ViewModel:
    """Load a checkpoint (sha256-verified) as the kind of model its card describes;
    ``memory_mb`` bounds one forward call (``SGC_CLASSIFY_MEMORY_MB``, sgc_core/batching.py)."""
    model, card = load_model(path, device)
    if "lesion" in card:
        return LesionFinder(model, card, device, memory_mb)
    return WholeViewModel(Classifier(model, card, device, memory_mb=memory_mb))
