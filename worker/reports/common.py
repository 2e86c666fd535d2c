"""What every report form shares: the typed input, deterministic UIDs, the algorithm's
identity, and the atomic write.

UIDs are derived from (study UID, model sha256, job revision, report form): a re-run after a
crash writes the very same SOP Instance and Series Instance UIDs, so the archive replaces,
never duplicates. The TID 1500 SR keeps the UIDs it had before other forms existed.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from sgc_config.atomic import replacing
from sgc_core.results import EvidenceMap
from worker.reports.codes import PRIVATE_SCHEMES, PROCESSING_ALGORITHM, SIDE_WORD

MANUFACTURER = "sgc-node"
SERIES_DESCRIPTION = "Research AI result (SGC) - not for diagnosis"
#: Series numbers of our report series, per form: far from the modality's own numbers.
SERIES_NUMBER_BASE = {"tid1500": 7000, "seg": 7300, "mammo-cad": 7600}
#: Namespace of all UIDs this node derives (RFC 4122 name-based UUIDs under the 2.25 root).
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sgc-node:structured-report")


def derived_uid(*parts: object) -> str:
    """A UID that is a pure function of ``parts``: 2.25.<name-based UUID as an integer>.

    PS3.5 B.2 allows UUID-derived UIDs under 2.25; a name-based (SHA-1, RFC 4122 v5) UUID
    makes the same inputs give the same UID on every machine and every re-run.
    """
    name = "\x1f".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


@dataclass(frozen=True)
class Algorithm:
    """The model as the report names it (from the model card)."""

    name: str
    version: str
    sha256: str
    operating_point: float
    positive_class: str


@dataclass(frozen=True)
class FindingRoi:
    """A located finding as the reports draw it: a closed outline of (row, col) points in the
    source image's pixels, its class (benign or malignant), the region's P(malignant), and
    (when the finder gives them) its centre (row, col) and radius in source pixels and its
    distance behind the nipple in mm."""

    label: str
    probability: float
    outline: tuple[tuple[float, float], ...]
    centre: tuple[float, float] | None = None
    radius: float | None = None
    nipple_distance_mm: float | None = None


@dataclass(frozen=True)
class ViewResult:
    """The classifier's result for one view, in the terms the reports need.

    ``bbox`` is (row0, col0, row1, col1), half-open, in the ORIGINAL image's pixel grid (after
    undoing preprocessing's crop, resize and flip), so the ROI lands on the breast in a viewer.
    ``findings`` are the view's located findings (the lesion finder's; empty for a whole-view
    model). ``evidence`` is the finder's per-pixel malignant-vs-normal evidence map when the
    model makes one; only the segmentation reads it.
    """

    sop_instance_uid: str
    laterality: str  # "L", "R", "B", or "" when the image does not say
    view: str
    probability: float
    bbox: tuple[int, int, int, int]
    ood: bool = False
    findings: tuple[FindingRoi, ...] = ()
    evidence: EvidenceMap | None = None

    def malignant(self, operating_point: float) -> bool:
        return self.probability >= operating_point

    @property
    def name(self) -> str:
        """How a reader names the view: "left CC"."""
        return f"{SIDE_WORD.get(self.laterality, 'unknown side')} {self.view or 'view'}"


@dataclass(frozen=True)
class ExamSummary:
    """The exam-level result (per breast and study, calibrated on exams) when the model has one;
    without it the report's summary takes each breast's most suspicious view."""

    breasts: dict[str, float]
    p_malignant: float
    operating_point: float


@dataclass(frozen=True)
class ReportUids:
    """The deterministic identity of one report object of one study revision."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int

    @classmethod
    def for_job(
        cls, study_uid: str, model_sha256: str, revision: int, form: str = "tid1500"
    ) -> ReportUids:
        # The TID 1500 SR's UIDs predate the other forms: its name parts stay as they were.
        tag = () if form == "tid1500" else (form,)
        return cls(
            series_instance_uid=derived_uid(study_uid, model_sha256, revision, *tag, "series"),
            sop_instance_uid=derived_uid(study_uid, model_sha256, revision, *tag, "sop"),
            series_number=SERIES_NUMBER_BASE[form] + revision,
        )


def check_probability(p: float, what: str = "probability") -> None:
    if not (isinstance(p, float | int) and math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ValueError(f"{what} {p} is outside [0, 1]")


def pixel_spacing(source: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm at the detector, or None when the image states none."""
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        value = source.get(keyword)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    return None


def on_image(point: tuple[float, float], source: Dataset) -> bool:
    """Whether a (row, col) point lies on the source image's pixels."""
    r, c = point
    return 0.0 <= r < int(source.Rows) and 0.0 <= c < int(source.Columns)


def outline_scoord(points, source: Dataset) -> np.ndarray:
    """A closed POLYLINE of (column, row) SCOORD points (pixel centre = index + 0.5), clipped
    to the image (an outline may overhang the edge by up to its radius)."""
    rows, cols = int(source.Rows), int(source.Columns)
    pts = np.array([[c + 0.5, r + 0.5] for r, c in points], dtype=np.float32)
    if len(pts) < 3 or not np.isfinite(pts).all():
        raise ValueError("a finding outline needs at least three finite points")
    pts[:, 0] = np.clip(pts[:, 0], 0, cols)
    pts[:, 1] = np.clip(pts[:, 1], 0, rows)
    if not np.array_equal(pts[0], pts[-1]):
        pts = np.vstack([pts, pts[:1]])
    return pts


def finding_centre(finding: FindingRoi) -> tuple[float, float]:
    """The finding's centre (row, col): the finder's, else the outline's mean."""
    if finding.centre is not None:
        return finding.centre
    pts = np.asarray(finding.outline, dtype=np.float64)
    return float(pts[:, 0].mean()), float(pts[:, 1].mean())


def device_context(algorithm: Algorithm) -> hd.sr.ObservationContext:
    """The observer of every report: the algorithm as a device (TID 1004)."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(algorithm.sha256, "device"),
        name=lo(algorithm.name),
        manufacturer_name=MANUFACTURER,
        model_name=lo(f"{algorithm.name} {algorithm.version}"),
    )
    return hd.sr.ObservationContext(
        observer_person_context=None,
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        ),
    )


def sr_document_args(uids: ReportUids, complete: bool) -> dict:
    """What every SR document the node writes says the same way: its deterministic UIDs, the
    node as manufacturer, UTF-8, and unverified (an algorithm's result, never a signed one)."""
    return {
        "series_instance_uid": uids.series_instance_uid,
        "series_number": uids.series_number,
        "sop_instance_uid": uids.sop_instance_uid,
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "is_complete": complete,
        "is_final": False,
        "is_verified": False,
        "transfer_syntax_uid": ExplicitVRLittleEndian,
        "specific_character_set": "ISO_IR 192",
    }


def sign_off(sr: Dataset, algorithm: Algorithm) -> Dataset:
    """Name the algorithm as contributing equipment and declare the private coding scheme."""
    sr.ContributingEquipmentSequence.append(algorithm_equipment(algorithm))
    sr.CodingSchemeIdentificationSequence = private_schemes()
    return sr


def algorithm_equipment(algorithm: Algorithm) -> Dataset:
    """The Contributing Equipment item that names the algorithm (IHE AI Results)."""
    item = Dataset()
    item.Manufacturer = MANUFACTURER
    item.ManufacturerModelName = lo(algorithm.name)
    item.SoftwareVersions = lo(algorithm.version)
    item.DeviceSerialNumber = algorithm.sha256[:16]
    item.ContributionDateTime = datetime.now().astimezone().strftime("%Y%m%d%H%M%S.%f%z")
    item.ContributionDescription = "Score-based generative classifier (research)"
    code = Dataset()
    code.CodeValue = PROCESSING_ALGORITHM.value
    code.CodingSchemeDesignator = PROCESSING_ALGORITHM.scheme_designator
    code.CodeMeaning = PROCESSING_ALGORITHM.meaning
    item.PurposeOfReferenceCodeSequence = [code]
    return item


def private_schemes() -> list[Dataset]:
    """Declare the private coding schemes the reports use (PS3.3 C.12.1.1.7.1)."""
    out = []
    for designator, name, org in PRIVATE_SCHEMES:
        ds = Dataset()
        ds.CodingSchemeDesignator = designator
        ds.CodingSchemeName = name
        ds.CodingSchemeResponsibleOrganization = org
        out.append(ds)
    return out


def lo(text: str) -> str:
    """Fit a long-string (LO, 64 chars) field: names come from model cards we do not control."""
    return text[:64]


def write_report(ds: Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` atomically (sgc_config.atomic: temp file, fsync, rename, folder
    fsync): a crash never leaves a truncated report where a reader or the deliverer would
    pick it up."""
    with replacing(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
