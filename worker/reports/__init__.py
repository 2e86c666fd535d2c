"""The report objects the node writes for a study: TID 1500 SR, evidence segmentation,
Mammography CAD SR. Which of them are written is the ``SGC_REPORT_FORMATS`` setting."""

from worker.reports.codes import PROBABILITY_OF_CANCER
from worker.reports.common import (
    SERIES_DESCRIPTION,
    Algorithm,
    ExamSummary,
    FindingRoi,
    ReportUids,
    ViewResult,
    derived_uid,
    write_report,
)
from worker.reports.tid1500 import build_report

__all__ = [
    "PROBABILITY_OF_CANCER",
    "SERIES_DESCRIPTION",
    "Algorithm",
    "ExamSummary",
    "FindingRoi",
    "ReportUids",
    "ViewResult",
    "build_report",
    "derived_uid",
    "write_report",
]
