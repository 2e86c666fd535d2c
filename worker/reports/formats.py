"""Which report objects a study gets (``SGC_REPORT_FORMATS``), built from one typed input.

Why all at once: every object of a study revision is built in memory before any is written,
so an input that breaks one form fails the job before anything is stored or delivered (the
job retries and then fails with the reason); what the reports cannot show is said in their
text instead of being dropped in silence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset

from worker.reports.cad import build_cad_report
from worker.reports.common import Algorithm, ExamSummary, ViewResult
from worker.reports.seg import build_segmentations
from worker.reports.tid1500 import build_report

#: File name suffix per form (offline output and the stored file's name).
SUFFIX = {"tid1500": "sr", "seg": "seg", "mammo-cad": "cad"}


@dataclass(frozen=True)
class StudyReportInput:
    """Everything the reports of one study revision say: the study's images (metadata), its
    classified views, the model, the revision, whether every image was classified, the
    exam-level result, and notes on what is missing (views not classified and why)."""

    sources: tuple[Dataset, ...]
    views: tuple[ViewResult, ...]
    algorithm: Algorithm
    revision: int
    complete: bool = True
    exam: ExamSummary | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportObject:
    """One DICOM object to store and deliver, and the form it is."""

    form: str
    dataset: Dataset

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)

    @property
    def suffix(self) -> str:
        return SUFFIX[self.form]


def build_objects(report: StudyReportInput, formats: Sequence[str]) -> list[ReportObject]:
    """The objects of ``formats`` for one study revision, the TID 1500 SR first.

    The segmentation is built first so that what it could not show (a view without positive
    evidence) is said in the SRs too.
    """
    unknown = set(formats) - set(SUFFIX)
    if unknown:
        raise ValueError(f"unknown report formats {sorted(unknown)}")
    r = report
    notes = list(r.notes)
    segs: list[ReportObject] = []
    if "seg" in formats:
        datasets, seg_notes = build_segmentations(r.sources, r.views, r.algorithm, r.revision)
        segs = [ReportObject("seg", ds) for ds in datasets]
        notes.extend(seg_notes)
    out: list[ReportObject] = []
    common = {"complete": r.complete, "exam": r.exam, "notes": notes}
    if "tid1500" in formats:
        sr = build_report(r.sources, r.views, r.algorithm, r.revision, **common)
        out.append(ReportObject("tid1500", sr))
    out.extend(segs)
    if "mammo-cad" in formats:
        cad = build_cad_report(r.sources, r.views, r.algorithm, r.revision, **common)
        out.append(ReportObject("mammo-cad", cad))
    return out
