"""The TID 1500 Structured Report in a Comprehensive SR (highdicom): what OHIF reads.

Why this form: TID 1500 "Imaging Measurement Report" is what IHE AI Results and OHIF read. Each
classified view becomes one TID 1410 planar-ROI measurement group whose ROI is the breast
region found by preprocessing, in the source image's own pixel coordinates, so a viewer draws
it on the image and labels it with the probability; each located finding gets a group of its
own on its place. A study-level "Qualitative Evaluations" container (TID 1500 row 12) carries
the summary and says what the report could not show (views not classified, findings off the
image, sizes without a pixel spacing).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset

import worker.reports.codes as c
from worker.reports.common import (
    SERIES_DESCRIPTION,
    Algorithm,
    ExamSummary,
    FindingRoi,
    ReportUids,
    ViewResult,
    check_probability,
    derived_uid,
    device_context,
    finding_centre,
    lo,
    on_image,
    outline_scoord,
    pixel_spacing,
    sign_off,
    sr_document_args,
)


def check_inputs(sources: Sequence[Dataset], views: Sequence[ViewResult]) -> str:
    """The study UID of ``sources``, after checking the views belong to them (every form)."""
    if not sources:
        raise ValueError("a report needs at least one source image")
    if not views:
        raise ValueError("a report needs at least one classified view")
    study_uids = {ds.StudyInstanceUID for ds in sources}
    if len(study_uids) != 1:
        raise ValueError(f"sources belong to {len(study_uids)} studies, expected one")
    known = {ds.SOPInstanceUID for ds in sources}
    missing = [v.sop_instance_uid for v in views if v.sop_instance_uid not in known]
    if missing:
        raise ValueError(f"views reference images not among the sources: {missing}")
    for v in views:
        if v.laterality and v.laterality not in c.LATERALITY:
            raise ValueError(f"laterality {v.laterality!r} of {v.sop_instance_uid} is not L/R/B")
        check_probability(v.probability)
        for f in v.findings:
            check_probability(f.probability, "finding probability")
    return study_uids.pop()


def drawable(view: ViewResult, source: Dataset) -> tuple[list[tuple[int, FindingRoi]], list[str]]:
    """The view's findings that lie on its image (numbered from 1), and a note for each that
    does not: a mapping error must not draw a mark somewhere else."""
    keep, notes = [], []
    for i, f in enumerate(view.findings, start=1):
        if on_image(finding_centre(f), source):
            keep.append((i, f))
        else:
            r, col = finding_centre(f)
            notes.append(
                f"{view.name} finding {i} lies outside the image after mapping "
                f"(row {r:.0f}, column {col:.0f}); not drawn"
            )
    return keep, notes


def build_report(
    sources: Sequence[Dataset],
    views: Sequence[ViewResult],
    algorithm: Algorithm,
    revision: int,
    *,
    complete: bool = True,
    institution_name: str | None = None,
    exam: ExamSummary | None = None,
    notes: Sequence[str] = (),
) -> hd.sr.ComprehensiveSR:
    """The SR for one study revision.

    ``sources`` are the study's images (metadata suffices, pixel data is not read): all of them
    are recorded as evidence and, where they carry the projection descriptors TID 1602 needs,
    listed in the Image Library. ``views`` are the classified ones (at least one).
    ``complete=False`` marks a study in which some images could not be classified (PARTIAL);
    ``notes`` say what the report lacks and why (they go into the impression).
    """
    study_uid = check_inputs(sources, views)
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    uids = ReportUids.for_job(study_uid, algorithm.sha256, revision)
    groups, notes = [], list(notes)
    for v in views:
        source = by_uid[v.sop_instance_uid]
        groups.append(_view_group(source, v, algorithm, uids.sop_instance_uid))
        findings, off_image = drawable(v, source)
        notes.extend(off_image)
        if findings and pixel_spacing(source) is None:
            notes.append(f"{v.name} has no pixel spacing: finding sizes are not reported")
        groups.extend(
            _finding_group(source, v, i, f, algorithm, uids.sop_instance_uid) for i, f in findings
        )
    library = [ds for ds in sources if _has_library_descriptors(ds)]
    report = hd.sr.MeasurementReport(
        observation_context=device_context(algorithm),
        procedure_reported=c.MAMMOGRAPHY,
        imaging_measurements=groups,
        referenced_images=library or None,
    )
    report[0].ContentSequence.append(_summary(views, algorithm, exam, notes))
    sr = hd.sr.ComprehensiveSR(
        evidence=list(sources),
        content=report[0],
        institution_name=institution_name,
        series_description=SERIES_DESCRIPTION,
        **sr_document_args(uids, complete),
    )
    return sign_off(sr, algorithm)


def _algorithm_id(algorithm: Algorithm, detailed: bool) -> hd.sr.AlgorithmIdentification:
    params = None
    if detailed:
        params = [
            f"sha256={algorithm.sha256[:52]}",
            f"operating_point={algorithm.operating_point:g}",
        ]
    return hd.sr.AlgorithmIdentification(
        name=lo(algorithm.name), version=lo(algorithm.version), parameters=params
    )


def _view_group(
    source: Dataset, view: ViewResult, algorithm: Algorithm, report_uid: str
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One TID 1410 group: the breast ROI of one view with its probability and finding."""
    # TID 1410 row "Finding" (121071, DCM) is where highdicom and OHIF read the finding type.
    finding = c.MALIGNANT if view.malignant(algorithm.operating_point) else c.BENIGN
    evaluations = [hd.sr.QualitativeEvaluation(c.OOD_FLAG, c.YES)] if view.ood else None
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(report_uid, view.sop_instance_uid, "tracking"),
            identifier=lo(f"{view.name} breast"),
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=_rectangle(view.bbox, source),
            source_image=hd.sr.SourceImageForRegion.from_source_image(source),
        ),
        finding_type=finding,
        algorithm_id=_algorithm_id(algorithm, detailed=True),
        finding_sites=[hd.sr.FindingSite(c.BREAST, laterality=c.LATERALITY.get(view.laterality))],
        measurements=[_probability(view.probability)],
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
    """One TID 1410 group per located finding: its outline, class, P(malignant) and, where the
    image states its pixel spacing (else both would rest on an assumed one), its diameter and
    its distance behind the nipple in mm."""
    measurements = [_probability(finding.probability)]
    spacing = pixel_spacing(source)
    if spacing is not None and finding.radius is not None:
        mm = 2.0 * finding.radius * float(np.mean(spacing))
        measurements.append(
            hd.sr.Measurement(name=c.DIAMETER, value=round(mm, 2), unit=c.MILLIMETER)
        )
    if spacing is not None and finding.nipple_distance_mm is not None:
        measurements.append(
            hd.sr.Measurement(
                name=c.DISTANCE_FROM_NIPPLE,
                value=round(finding.nipple_distance_mm, 1),
                unit=c.MILLIMETER,
            )
        )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(report_uid, view.sop_instance_uid, "finding", number),
            identifier=lo(f"{view.name} finding {number}"),
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=outline_scoord(finding.outline, source),
            source_image=hd.sr.SourceImageForRegion.from_source_image(source),
        ),
        finding_type=c.MALIGNANT if finding.label == "malignant" else c.BENIGN,
        algorithm_id=_algorithm_id(algorithm, detailed=False),
        finding_sites=[hd.sr.FindingSite(c.BREAST, laterality=c.LATERALITY.get(view.laterality))],
        measurements=measurements,
    )


def _probability(p: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(
        name=c.PROBABILITY_OF_CANCER, value=round(100.0 * p, 3), unit=c.PERCENT
    )


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


def per_breast(
    views: Sequence[ViewResult], algorithm: Algorithm, exam: ExamSummary | None
) -> tuple[dict[str, float], str, float, float]:
    """Each breast's probability, the worst side, the study's probability and the operating
    point it is read at: the exam-level result when the model has one, else the worst view."""
    breasts: dict[str, float] = {}
    for v in views:
        for side in ("L", "R") if v.laterality == "B" else (v.laterality or "?",):
            breasts[side] = max(breasts.get(side, 0.0), v.probability)
    operating_point = algorithm.operating_point
    if exam is not None and exam.breasts:
        breasts = {s if s in c.SIDE_WORD else "?": p for s, p in exam.breasts.items()}
        operating_point = exam.operating_point
    worst = max(breasts, key=lambda s: (breasts[s], s))
    study_p = breasts[worst] if exam is None else exam.p_malignant
    return breasts, worst, study_p, operating_point


def impression(
    views: Sequence[ViewResult],
    algorithm: Algorithm,
    exam: ExamSummary | None,
    notes: Sequence[str] = (),
) -> str:
    """The one-paragraph impression every form carries: study, breasts, what is missing."""
    breasts, worst, study_p, op = per_breast(views, algorithm, exam)
    malignant = study_p >= op
    parts = [f"{c.SIDE_WORD[s]} breast {100 * breasts[s]:.1f} %" for s in sorted(breasts)]
    ood = sum(v.ood for v in views)
    findings = sum(len(v.findings) for v in views)
    head = "Study" if exam is not None else f"Highest: {c.SIDE_WORD[worst]} breast"
    return (
        f"{head} probability of cancer {100 * study_p:.1f} % "
        f"({'malignant' if malignant else 'benign'} at operating point "
        f"{100 * op:.1f} %). Per breast: {'; '.join(parts)}."
        + (f" {findings} located finding(s)." if findings else "")
        + (f" {ood} view(s) flagged out of distribution." if ood else "")
        + "".join(f" {n}." for n in notes)
        + " Research AI result, not verified, not for diagnosis."
    )


def _summary(
    views: Sequence[ViewResult],
    algorithm: Algorithm,
    exam: ExamSummary | None,
    notes: Sequence[str],
) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: the study's worst breast, as a coded finding plus the impression."""
    _, worst, study_p, op = per_breast(views, algorithm, exam)
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    container = hd.sr.ContainerContentItem(
        name=c.QUALITATIVE_EVALUATIONS, relationship_type=contains
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.CodeContentItem(
                name=c.FINDING,
                value=c.MALIGNANT if study_p >= op else c.BENIGN,
                relationship_type=contains,
            ),
            hd.sr.CodeContentItem(
                name=c.FINDING_SITE,
                value=c.BREAST_SIDE.get(worst, c.BREAST),
                relationship_type=contains,
            ),
            hd.sr.TextContentItem(
                name=c.IMPRESSION,
                value=impression(views, algorithm, exam, notes),
                relationship_type=contains,
            ),
        ]
    )
    return container


def _has_library_descriptors(ds: Dataset) -> bool:
    """TID 1603 (projection radiography) needs these; images without them stay evidence only."""
    return "PatientOrientation" in ds and "ImagerPixelSpacing" in ds and "Rows" in ds
