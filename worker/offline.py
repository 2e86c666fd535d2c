"""Classify DICOM files without the node (for `sgc classify`): same preprocessing, same
classifier, same SR as a job, minus the database and the broker."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgc_core.inference import Classifier
from worker import sr as srmod
from worker.classify import _algorithm, _prepare, _preprocess_config


@dataclass(frozen=True)
class _FileRef:
    """What `_prepare` needs of an instance: its identity."""

    sop_instance_uid: str
    path: Path


@dataclass
class FileResult:
    path: Path
    sop_instance_uid: str
    study_uid: str
    laterality: str
    view: str
    result: Any  # sgc_core.inference.ClassResult, or None when the file could not be classified
    error: str | None
    bbox: tuple[int, int, int, int] | None
    meta: Any  # the dataset without pixel data (SR evidence), None if unreadable


def classify_files(classifier: Classifier, paths: list[Path], batch: int = 8) -> list[FileResult]:
    """Preprocess each file as the card says and classify them in batches."""
    import torch

    config = _preprocess_config(classifier.card)
    views = []
    for path in paths:
        view = _prepare(_FileRef("", path), path, config)  # type: ignore[arg-type]
        views.append((path, view))
    ok = [(p, v) for p, v in views if v.error is None]
    results: dict[Path, Any] = {}
    for start in range(0, len(ok), batch):
        chunk = ok[start : start + batch]
        out = classifier.classify(
            torch.stack([v.tensor for _, v in chunk]), [v.ood_reasons for _, v in chunk]
        )
        results.update({p: r for (p, _), r in zip(chunk, out, strict=True)})
    return [
        FileResult(
            path=p,
            sop_instance_uid=str(v.meta.SOPInstanceUID) if v.meta is not None else "",
            study_uid=str(v.meta.StudyInstanceUID) if v.meta is not None else "",
            laterality=v.laterality,
            view=v.view,
            result=results.get(p),
            error=v.error,
            bbox=v.bbox,
            meta=v.meta,
        )
        for p, v in views
    ]


def write_reports(classifier: Classifier, files: list[FileResult], out_dir: Path) -> list[Path]:
    """One SR per study among ``files`` (revision 0: an offline run, not a node job)."""
    algorithm = _algorithm(classifier.card)
    by_study: dict[str, list[FileResult]] = defaultdict(list)
    for f in files:
        if f.meta is not None:
            by_study[f.study_uid].append(f)
    written = []
    for study_uid, members in by_study.items():
        classified = [f for f in members if f.result is not None]
        if not classified:
            continue
        report = srmod.build_report(
            [f.meta for f in members],
            [
                srmod.ViewResult(
                    sop_instance_uid=f.sop_instance_uid,
                    laterality=f.laterality,
                    view=f.view,
                    probability=float(f.result.probabilities[algorithm.positive_class]),
                    bbox=f.bbox,  # type: ignore[arg-type]
                    ood=bool(f.result.ood),
                )
                for f in classified
            ],
            algorithm,
            0,
            complete=len(classified) == len(members),
        )
        path = out_dir / f"{study_uid}.sr.dcm"
        srmod.write_report(report, path)
        written.append(path)
    return written
