"""The DICOM Structured Report the node returns: TID 1500 in a Comprehensive SR (highdicom).

Why this form: TID 1500 "Imaging Measurement Report" is what IHE AI Results and OHIF read. Each
classified view becomes one TID 1410 planar-ROI measurement group whose ROI is the breast
region found by preprocessing, in the source image's own pixel coordinates, so a viewer draws
it on the image and labels it with the probability. A study-level "Qualitative Evaluations"
container (TID 1500 row 12) carries the summary: the worst breast.

Codes (PS3.16 / SNOMED CT unless noted):

- Procedure reported: (71651007, SCT, "Mammography").
- Per view: (111047, DCM, "Probability of cancer") in UCUM "%"; (121071, DCM, "Finding") =
  (21594007, SCT, "Malignant") when the probability reaches the model's operating point, else
  (30807003, SCT, "Benign"); finding site (76752008, SCT, "Breast") with laterality
  (7771000, SCT, "Left") / (24028007, SCT, "Right").
- Out-of-distribution flag: no standard code says "this input is outside what the model was
  trained on", so the node uses a private scheme declared in the Coding Scheme Identification
  Sequence: (OOD, 99SGC, "Input outside model training distribution") = (373066001, SCT,
  "Yes"). It is present only when raised and tells the reader not to trust that view's value.
- Contributing equipment purpose: (Newcode1, 99IHE, "Processing Algorithm") per IHE AIR.

UIDs are derived from (study UID, model sha256, job revision): a re-run after a crash writes
the very same SOP Instance and Series Instance UIDs, so the archive replaces, never duplicates.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

MANUFACTURER = "sgc-node"
SERIES_DESCRIPTION = "Research AI result (SGC) - not for diagnosis"
#: Series numbers of our SR series: far from the modality's own series numbers.
SERIES_NUMBER_BASE = 7000
#: Namespace of all UIDs this node derives (RFC 4122 name-based UUIDs under the 2.25 root).
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:sgc-node:structured-report")

MAMMOGRAPHY = hd.sr.CodedConcept("71651007", "SCT", "Mammography")
PROBABILITY_OF_CANCER = hd.sr.CodedConcept("111047", "DCM", "Probability of cancer")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "Percent")
FINDING = hd.sr.CodedConcept("121071", "DCM", "Finding")
MALIGNANT = hd.sr.CodedConcept("21594007", "SCT", "Malignant")
BENIGN = hd.sr.CodedConcept("30807003", "SCT", "Benign")
BREAST = hd.sr.CodedConcept("76752008", "SCT", "Breast")
LEFT = hd.sr.CodedConcept("7771000", "SCT", "Left")
RIGHT = hd.sr.CodedConcept("24028007", "SCT", "Right")
BOTH = hd.sr.CodedConcept("51440002", "SCT", "Right and left")
LEFT_BREAST = hd.sr.CodedConcept("80248007", "SCT", "Left breast")
RIGHT_BREAST = hd.sr.CodedConcept("73056007", "SCT", "Right breast")
FINDING_SITE = hd.sr.CodedConcept("363698007", "SCT", "Finding Site")
OOD_FLAG = hd.sr.CodedConcept("OOD", "99SGC", "Input outside model training distribution")
YES = hd.sr.CodedConcept("373066001", "SCT", "Yes")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
IMPRESSION = hd.sr.CodedConcept("121073", "DCM", "Impression")
PROCESSING_ALGORITHM = hd.sr.CodedConcept("Newcode1", "99IHE", "Processing Algorithm")

_LATERALITY = {"L": LEFT, "R": RIGHT, "B": BOTH}
_BREAST_SIDE = {"L": LEFT_BREAST, "R": RIGHT_BREAST}
_SIDE_WORD = {"L": "left", "R": "right", "B": "both", "?": "unknown side"}


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
    """A located finding as the report draws it: a closed outline of (row, col) points in the
    source image's pixels, its class (benign or malignant) and the region's P(malignant)."""

    label: str
    probability: float
    outline: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ViewResult:
    """The classifier's result for one view, in the terms the report needs.

    ``bbox`` is (row0, col0, row1, col1), half-open, in the ORIGINAL image's pixel grid (after
    undoing preprocessing's crop, resize and flip), so the ROI lands on the breast in a viewer.
    ``findings`` are the view's located findings (the lesion finder's; empty for a whole-view
    model), each reported as a TID 1410 group of its own on its place in the image.
    """

    sop_instance_uid: str
    laterality: str  # "L", "R", "B", or "" when the image does not say
    view: str
    probability: float
    bbox: tuple[int, int, int, int]
    ood: bool = False
    findings: tuple[FindingRoi, ...] = ()

    def malignant(self, operating_point: float) -> bool:
        return self.probability >= operating_point


@dataclass(frozen=True)
class ExamSummary:
    """The exam-level result (per breast and study, calibrated on exams) when the model has one;
    without it the report's summary takes each breast's most suspicious view."""

    breasts: dict[str, float]
    p_malignant: float
    operating_point: float


@dataclass(frozen=True)
class ReportUids:
    """The deterministic identity of one report of one study revision."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int

    @classmethod
    def for_job(cls, study_uid: str, model_sha256: str, revision: int) -> ReportUids:
        return cls(
            series_instance_uid=derived_uid(study_uid, model_sha256, revision, "series"),
            sop_instance_uid=derived_uid(study_uid, model_sha256, revision, "sop"),
            series_number=SERIES_NUMBER_BASE + revision,
        )


def build_report(
    sources: Sequence[Dataset],
    views: Sequence[ViewResult],
    algorithm: Algorithm,
    revision: int,
    *,
    complete: bool = True,
    institution_name: str | None = None,
    exam: ExamSummary | None = None,
) -> hd.sr.ComprehensiveSR:
    """The SR for one study revision.

    ``sources`` are the study's images (metadata suffices, pixel data is not read): all of them
    are recorded as evidence and, where they carry the projection descriptors TID 1602 needs,
    listed in the Image Library. ``views`` are the classified ones (at least one).
    ``complete=False`` marks a study in which some images could not be classified (PARTIAL).
    """
    if not sources:
        raise ValueError("a report needs at least one source image")
    if not views:
        raise ValueError("a report needs at least one classified view")
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    study_uids = {ds.StudyInstanceUID for ds in sources}
    if len(study_uids) != 1:
        raise ValueError(f"sources belong to {len(study_uids)} studies, expected one")
    study_uid = study_uids.pop()
    missing = [v.sop_instance_uid for v in views if v.sop_instance_uid not in by_uid]
    if missing:
        raise ValueError(f"views reference images not among the sources: {missing}")

    uids = ReportUids.for_job(study_uid, algorithm.sha256, revision)
    groups = []
    for v in views:
        source = by_uid[v.sop_instance_uid]
        groups.append(_measurement_group(source, v, algorithm, uids.sop_instance_uid))
        groups.extend(
            _finding_group(source, v, i, f, algorithm, uids.sop_instance_uid)
            for i, f in enumerate(v.findings, start=1)
        )
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(algorithm.sha256, "device"),
        name=_lo(algorithm.name),
        manufacturer_name=MANUFACTURER,
        model_name=_lo(f"{algorithm.name} {algorithm.version}"),
    )
    context = hd.sr.ObservationContext(
        observer_person_context=None,
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        ),
    )
    library = [ds for ds in sources if _has_library_descriptors(ds)]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=MAMMOGRAPHY,
        imaging_measurements=groups,
        referenced_images=library or None,
    )
    report[0].ContentSequence.append(_summary(views, algorithm, exam))

    sr = hd.sr.ComprehensiveSR(
        evidence=list(sources),
        content=report[0],
        series_instance_uid=uids.series_instance_uid,
        series_number=uids.series_number,
        sop_instance_uid=uids.sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=complete,
        is_final=False,
        is_verified=False,
        institution_name=institution_name,
        series_description=SERIES_DESCRIPTION,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        specific_character_set="ISO_IR 192",
    )
    sr.ContributingEquipmentSequence.append(_algorithm_equipment(algorithm))
    sr.CodingSchemeIdentificationSequence = _private_schemes()
    return sr


def _measurement_group(
    source: Dataset, view: ViewResult, algorithm: Algorithm, report_uid: str
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One TID 1410 group: the breast ROI of one view with its probability and finding."""
    if view.laterality and view.laterality not in _LATERALITY:
        raise ValueError(f"laterality {view.laterality!r} of {view.sop_instance_uid} is not L/R/B")
    if not 0.0 <= view.probability <= 1.0:
        raise ValueError(f"probability {view.probability} is outside [0, 1]")
    side = _SIDE_WORD.get(view.laterality, "unknown side")
    # TID 1410 row "Finding" (121071, DCM) is where highdicom and OHIF read the finding type.
    finding = MALIGNANT if view.malignant(algorithm.operating_point) else BENIGN
    evaluations = [hd.sr.QualitativeEvaluation(OOD_FLAG, YES)] if view.ood else None
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(report_uid, view.sop_instance_uid, "tracking"),
            identifier=_lo(f"{side} {view.view or 'view'} breast".strip()),
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=_rectangle(view.bbox, source),
            source_image=hd.sr.SourceImageForRegion.from_source_image(source),
        ),
        finding_type=finding,
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=_lo(algorithm.name),
            version=_lo(algorithm.version),
            parameters=[
                f"sha256={algorithm.sha256[:52]}",
                f"operating_point={algorithm.operating_point:g}",
            ],
        ),
        finding_sites=[hd.sr.FindingSite(BREAST, laterality=_LATERALITY.get(view.laterality))],
        measurements=[
            hd.sr.Measurement(
                name=PROBABILITY_OF_CANCER,
                value=round(100.0 * view.probability, 3),
                unit=PERCENT,
            )
        ],
        qualitative_evaluations=evaluations,
    )


def _finding_group(
    source: Dataset,
    view: ViewResult,
    number: int,
    finding: FindingRoi,
    algorithm: Algorithm,
    report_uid: str,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One TID 1410 group per located finding: its outline, class and P(malignant)."""
    if not 0.0 <= finding.probability <= 1.0:
        raise ValueError(f"finding probability {finding.probability} is outside [0, 1]")
    side = _SIDE_WORD.get(view.laterality, "unknown side")
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(report_uid, view.sop_instance_uid, "finding", number),
            identifier=_lo(f"{side} {view.view or 'view'} finding {number}"),
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=_outline(finding.outline, source),
            source_image=hd.sr.SourceImageForRegion.from_source_image(source),
        ),
        finding_type=MALIGNANT if finding.label == "malignant" else BENIGN,
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=_lo(algorithm.name), version=_lo(algorithm.version)
        ),
        finding_sites=[hd.sr.FindingSite(BREAST, laterality=_LATERALITY.get(view.laterality))],
        measurements=[
            hd.sr.Measurement(
                name=PROBABILITY_OF_CANCER,
                value=round(100.0 * finding.probability, 3),
                unit=PERCENT,
            )
        ],
    )


def _outline(points: Sequence[tuple[float, float]], source: Dataset) -> np.ndarray:
    """A closed POLYLINE of (column, row) SCOORD points (pixel centre = index + 0.5)."""
    rows, cols = int(source.Rows), int(source.Columns)
    pts = np.array([[c + 0.5, r + 0.5] for r, c in points], dtype=np.float32)
    if len(pts) < 3 or not np.isfinite(pts).all():
        raise ValueError("a finding outline needs at least three finite points")
    pts[:, 0] = np.clip(pts[:, 0], 0, cols)
    pts[:, 1] = np.clip(pts[:, 1], 0, rows)
    if not np.array_equal(pts[0], pts[-1]):
        pts = np.vstack([pts, pts[:1]])
    return pts


def _rectangle(bbox: tuple[int, int, int, int], source: Dataset) -> np.ndarray:
    """A closed POLYLINE around the half-open pixel box, as (column, row) SCOORD points.

    SCOORD pixel coordinates put (0, 0) at the top-left corner of the top-left pixel, so the
    half-open box [row0, row1) x [col0, col1) has its corners exactly at those numbers.
    """
    row0, col0, row1, col1 = (int(v) for v in bbox)
    rows, cols = int(source.Rows), int(source.Columns)
    if not (0 <= row0 < row1 <= rows and 0 <= col0 < col1 <= cols):
        raise ValueError(
            f"bounding box {bbox} does not fit the {rows}x{cols} image {source.SOPInstanceUID}"
        )
    return np.array(
        [[col0, row0], [col1, row0], [col1, row1], [col0, row1], [col0, row0]], dtype=np.float32
    )


def _summary(
    views: Sequence[ViewResult], algorithm: Algorithm, exam: ExamSummary | None = None
) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: the study's worst breast, as a coded finding plus a one-line impression."""
    per_breast: dict[str, float] = {}
    for v in views:
        for side in ("L", "R") if v.laterality == "B" else (v.laterality or "?",):
            per_breast[side] = max(per_breast.get(side, 0.0), v.probability)
    operating_point = algorithm.operating_point
    if exam is not None and exam.breasts:
        per_breast = {s if s in _SIDE_WORD else "?": p for s, p in exam.breasts.items()}
        operating_point = exam.operating_point
    worst_side = max(per_breast, key=lambda s: (per_breast[s], s))
    worst_p = per_breast[worst_side] if exam is None else exam.p_malignant
    malignant = worst_p >= operating_point
    parts = [f"{_SIDE_WORD[s]} breast {100 * per_breast[s]:.1f} %" for s in sorted(per_breast)]
    ood = sum(v.ood for v in views)
    findings = sum(len(v.findings) for v in views)
    head = "Study" if exam is not None else f"Highest: {_SIDE_WORD[worst_side]} breast"
    text = (
        f"{head} probability of cancer {100 * worst_p:.1f} % "
        f"({'malignant' if malignant else 'benign'} at operating point "
        f"{100 * operating_point:.1f} %). Per breast: {'; '.join(parts)}."
        + (f" {findings} located finding(s)." if findings else "")
        + (f" {ood} view(s) flagged out of distribution." if ood else "")
        + " Research AI result, not verified, not for diagnosis."
    )
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.CodeContentItem(
                name=FINDING,
                value=MALIGNANT if malignant else BENIGN,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            ),
            hd.sr.CodeContentItem(
                name=FINDING_SITE,
                value=_BREAST_SIDE.get(worst_side, BREAST),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            ),
            hd.sr.TextContentItem(
                name=IMPRESSION,
                value=text,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            ),
        ]
    )
    return container


def _algorithm_equipment(algorithm: Algorithm) -> Dataset:
    """The Contributing Equipment item that names the algorithm (IHE AI Results)."""
    item = Dataset()
    item.Manufacturer = MANUFACTURER
    item.ManufacturerModelName = _lo(algorithm.name)
    item.SoftwareVersions = _lo(algorithm.version)
    item.DeviceSerialNumber = algorithm.sha256[:16]
    item.ContributionDateTime = datetime.now().astimezone().strftime("%Y%m%d%H%M%S.%f%z")
    item.ContributionDescription = "Score-based generative classifier (research)"
    code = Dataset()
    code.CodeValue = PROCESSING_ALGORITHM.value
    code.CodingSchemeDesignator = PROCESSING_ALGORITHM.scheme_designator
    code.CodeMeaning = PROCESSING_ALGORITHM.meaning
    item.PurposeOfReferenceCodeSequence = [code]
    return item


def _private_schemes() -> list[Dataset]:
    """Declare the private coding schemes the report uses (PS3.3 C.12.1.1.7.1)."""
    out = []
    for designator, name, org in (
        ("99SGC", "sgc-node private codes", "sgc-node"),
        ("99IHE", "IHE private codes", "IHE"),
    ):
        ds = Dataset()
        ds.CodingSchemeDesignator = designator
        ds.CodingSchemeName = name
        ds.CodingSchemeResponsibleOrganization = org
        out.append(ds)
    return out


def _has_library_descriptors(ds: Dataset) -> bool:
    """TID 1603 (projection radiography) needs these; images without them stay evidence only."""
    return "PatientOrientation" in ds and "ImagerPixelSpacing" in ds and "Rows" in ds


def _lo(text: str) -> str:
    """Fit a long-string (LO, 64 chars) field: names come from model cards we do not control."""
    return text[:64]


def write_report(sr: Dataset, path: Path) -> None:
    """Write ``sr`` to ``path`` atomically (temp file, fsync, rename): a crash never leaves a
    truncated report where a reader or the deliverer would pick it up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sr.save_as(tmp, enforce_file_format=True)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
