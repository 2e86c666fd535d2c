"""The database-free pipeline a job and `sgc classify` share: files -> view results -> reports.

Why one pipeline: the node and the offline command must give the same answer and the same
report for the same files. The job (worker/classify.py) adds the lease, the database rows and
the deliveries around it; worker/offline.py adds nothing but the output folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom import Dataset

from sgc_core.results import ExamResult, ViewResult
from sgc_core.view_meta import view_position
from sgc_core.view_model import ViewModel
from sgc_core.view_pairs import PAIRED
from worker import reports as srmod
from worker.reports.formats import ReportObject, StudyReportInput, build_objects


@dataclass(frozen=True)
class ViewOutcome:
    """One file's outcome: its result, or why it could not be classified (``error``)."""

    path: Path
    sop_instance_uid: str
    study_uid: str
    meta: Dataset | None  # the dataset without pixel data (SR evidence); None if unreadable
    laterality: str
    view: str
    result: ViewResult | None
    error: str | None


def classify_paths(model: ViewModel, paths: Sequence[Path]) -> list[ViewOutcome]:
    """Read every file and classify the readable ones in one call.

    An unreadable or unclassifiable file gets an error, not an exception, so the rest of the
    study is still reported. A missing file raises (transient: the volume may be unmounted).
    """
    read = [_read(Path(p)) for p in paths]
    results = iter(model.classify([ds for ds, _ in read if ds is not None]))
    out = []
    for path, (ds, error) in zip(paths, read, strict=True):
        result = next(results) if ds is not None else None
        if isinstance(result, str):
            result, error = None, result
        meta = metadata(ds) if ds is not None else None
        out.append(
            ViewOutcome(
                path=Path(path),
                sop_instance_uid=str(ds.get("SOPInstanceUID", "")) if ds is not None else "",
                study_uid=str(ds.get("StudyInstanceUID", "")) if ds is not None else "",
                meta=meta,
                laterality=_laterality(ds, result),
                view=(result.view if result is not None else None) or _view(ds),
                result=result,
                error=error,
            )
        )
    return out


def _read(path: Path) -> tuple[Dataset | None, str | None]:
    if not path.exists():
        raise FileNotFoundError(f"stored file {path} is missing")
    try:
        return pydicom.dcmread(path), None
    except (pydicom.errors.InvalidDicomError, OSError, ValueError) as exc:
        return None, f"not a readable DICOM file: {exc}"


def metadata(ds: Dataset) -> Dataset:
    """The dataset without pixel data: all the SR needs (evidence, library, ROI source)."""
    meta = Dataset()
    meta.file_meta = ds.file_meta if hasattr(ds, "file_meta") else Dataset()
    for elem in ds:
        if elem.tag.group != 0x7FE0:
            meta.add(elem)
    return meta


def _view(ds: Dataset | None) -> str:
    """The view the image states (CC, MLO, ...), for an image the model gave no result."""
    return (view_position(ds) or "") if ds is not None else ""


def _laterality(ds: Dataset | None, result: ViewResult | None) -> str:
    value = (result.laterality if result is not None else None) or (
        str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "") if ds else ""
    )
    value = value.strip().upper()[:1]
    return value if value in ("L", "R", "B") else ""


def algorithm(model: ViewModel) -> srmod.Algorithm:
    ident = model.identity
    return srmod.Algorithm(
        ident.name, ident.version, ident.sha256, ident.operating_point, "malignant"
    )


def exam_of(model: ViewModel, outcomes: Sequence[ViewOutcome]) -> ExamResult | None:
    return model.exam([o.result for o in outcomes if o.result is not None])


def report_input(
    model: ViewModel, outcomes: Sequence[ViewOutcome], revision: int
) -> StudyReportInput | None:
    """What the study's reports say, or None when no view could be classified."""
    classified = [o for o in outcomes if o.result is not None and o.result.p_malignant is not None]
    if not classified:
        return None
    exam = exam_of(model, outcomes)
    summary = None
    if exam is not None and exam.p_malignant is not None:
        breasts = {b.laterality: b.p_malignant for b in exam.breasts if b.p_malignant is not None}
        summary = srmod.ExamSummary(breasts, exam.p_malignant, exam.operating_point)
    return StudyReportInput(
        sources=tuple(o.meta for o in outcomes if o.meta is not None),
        views=tuple(report_view(o) for o in classified),
        algorithm=algorithm(model),
        revision=revision,
        complete=len(classified) == len(outcomes),
        exam=summary,
        notes=tuple(missing_notes(outcomes) + alone_notes(outcomes)),
    )


def missing_notes(outcomes: Sequence[ViewOutcome]) -> list[str]:
    """One sentence per image that has no result in the reports, saying why."""
    notes = []
    for o in outcomes:
        if o.result is not None and o.result.p_malignant is not None:
            continue
        reason = o.error or (o.result.ood_reason if o.result is not None else None)
        name = f"{o.laterality or '?'} {o.view or 'view'}".strip()
        uid = o.sop_instance_uid or o.path.name
        notes.append(f"image {uid} ({name}) not classified: {reason or 'no result'}")
    return notes


def alone_notes(outcomes: Sequence[ViewOutcome]) -> list[str]:
    """One sentence per view that a card reading in pairs had to read without the other
    projection of its breast (its probability is then its own view's alone)."""
    notes = []
    for o in outcomes:
        if o.result is not None and o.result.extra.get(PAIRED) is False:
            name = f"{o.laterality or '?'} {o.view or 'view'}".strip()
            uid = o.sop_instance_uid or o.path.name
            notes.append(
                f"image {uid} ({name}) read without the other projection of its breast: "
                "its probability is its own view's"
            )
    return notes


def build_reports(
    model: ViewModel, outcomes: Sequence[ViewOutcome], revision: int, formats: Sequence[str]
) -> list[ReportObject]:
    """The study's report objects of ``formats`` (empty when no view could be classified)."""
    report = report_input(model, outcomes, revision)
    return [] if report is None else build_objects(report, formats)


def build_report(
    model: ViewModel, outcomes: Sequence[ViewOutcome], revision: int
) -> Dataset | None:
    """The study's TID 1500 SR alone, or None when no view could be classified."""
    objects = build_reports(model, outcomes, revision, ("tid1500",))
    return objects[0].dataset if objects else None


def report_view(o: ViewOutcome) -> srmod.ViewResult:
    r = o.result
    assert r is not None and r.p_malignant is not None
    return srmod.ViewResult(
        sop_instance_uid=o.sop_instance_uid,
        laterality=o.laterality,
        view=o.view,
        probability=float(r.p_malignant),
        bbox=r.breast_box,
        ood=bool(r.ood),
        findings=tuple(
            srmod.FindingRoi(
                f.label,
                float(f.p_malignant),
                f.outline,
                tuple(f.centre),
                float(f.radius),
                f.nipple_distance_mm,
            )
            for f in r.findings
        ),
        evidence=r.evidence,
    )
