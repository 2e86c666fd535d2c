"""The Mammography CAD SR (TID 4000): the report form mammography workstations read.

Why a second SR: screening is read on mammography workstations, which take CAD SRs and honour
their rendering intent; OHIF reads TID 1500 only. highdicom has no TID 4000 builder, so the
tree is made from its content-item classes, following PS3.16:

- TID 4000 root "Mammography CAD Report": language, the algorithm as device observer, the
  Image Library (TID 4020, laterality and view per image) and TID 4001.
- TID 4001 "CAD Processing and Findings Summary" (CID 6047: all/not all algorithms succeeded,
  with/without findings), with the detections (TID 4015/4017) and analyses (TID 4016/4018)
  performed, each naming the algorithm (TID 4019).
- One TID 4003 "Individual Impression/Recommendation" per breast (its probability of cancer in
  words, rendering intent, and its single-image findings, TID 4006) and one for the study.
- TID 4006 per finding: "Selected region" (the finder does not type lesions), rendering intent
  (presentation required for a malignant finding), the algorithm, certainty of finding and
  probability of cancer (both the finding's P(malignant), in %), its class, and the centre
  (POINT) and outline (POLYLINE) SCOORDs, each SELECTED FROM its image.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from highdicom.sr.sop import _SR
from pydicom import Dataset

import worker.reports.codes as c
from worker.reports.common import (
    SERIES_DESCRIPTION,
    Algorithm,
    ExamSummary,
    FindingRoi,
    ReportUids,
    ViewResult,
    device_context,
    finding_centre,
    lo,
    outline_scoord,
    sign_off,
    sr_document_args,
)
from worker.reports.tid1500 import check_inputs, drawable, impression, per_breast

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
CAD_SERIES_DESCRIPTION = SERIES_DESCRIPTION.replace("result", "CAD result")


def _dcm(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, "DCM", meaning)


CAD_REPORT = _dcm("111036", "Mammography CAD Report")
IMAGE_LIBRARY = _dcm("111028", "Image Library")
IMAGE_LATERALITY = _dcm("111027", "Image Laterality")
IMAGE_VIEW = _dcm("111031", "Image View")
PROCESSING_SUMMARY = _dcm("111017", "CAD Processing and Findings Summary")
SUMMARY_OF_DETECTIONS = _dcm("111064", "Summary of Detections")
SUCCESSFUL_DETECTIONS = _dcm("111063", "Successful Detections")
DETECTION_PERFORMED = _dcm("111022", "Detection Performed")
SUMMARY_OF_ANALYSES = _dcm("111065", "Summary of Analyses")
SUCCESSFUL_ANALYSES = _dcm("111062", "Successful Analyses")
ANALYSIS_PERFORMED = _dcm("111004", "Analysis Performed")
OVERALL_ANALYSIS = _dcm("111234", "Overall Impression/Recommendation Analysis")
SUCCEEDED = _dcm("111222", "Succeeded")
PARTIALLY_SUCCEEDED = _dcm("111223", "Partially Succeeded")
INDIVIDUAL_IMPRESSION = _dcm("111034", "Individual Impression/Recommendation")
RENDERING_INTENT = _dcm("111056", "Rendering Intent")
PRESENTATION_REQUIRED = _dcm(
    "111150", "Presentation Required: Rendering device is expected to present"
)
PRESENTATION_OPTIONAL = _dcm("111151", "Presentation Optional: Rendering device may present")
IMPRESSION_DESCRIPTION = _dcm("111033", "Impression Description")
SINGLE_IMAGE_FINDING = _dcm("111059", "Single Image Finding")
SELECTED_REGION = _dcm("111099", "Selected region")
CERTAINTY = _dcm("111012", "Certainty of Finding")
CENTER = _dcm("111010", "Center")
OUTLINE = _dcm("111041", "Outline")
ALGORITHM_NAME = _dcm("111001", "Algorithm Name")
ALGORITHM_VERSION = _dcm("111003", "Algorithm Version")
ALGORITHM_PARAMETERS = _dcm("111002", "Algorithm Parameters")
SOURCE = hd.sr.CodedConcept("260753009", "SCT", "Source")
VIEW_CODES = {
    "CC": hd.sr.CodedConcept("399162004", "SCT", "cranio-caudal"),
    "MLO": hd.sr.CodedConcept("399368009", "SCT", "medio-lateral oblique"),
}
# Summary values (CID 6047), keyed by (every view classified, any finding).
_SUMMARY = {
    (True, True): _dcm("111242", "All algorithms succeeded; with findings"),
    (True, False): _dcm("111241", "All algorithms succeeded; without findings"),
    (False, True): _dcm("111244", "Not all algorithms succeeded; with findings"),
    (False, False): _dcm("111243", "Not all algorithms succeeded; without findings"),
}

_R = hd.sr.RelationshipTypeValues


class MammographyCADSR(_SR):
    """A Mammography CAD SR document (PS3.3 A.35.5): highdicom's SR document, our SOP class."""

    def __init__(self, **kwargs) -> None:
        super().__init__(sop_class_uid=MAMMOGRAPHY_CAD_SR, **kwargs)


def build_cad_report(
    sources: Sequence[Dataset],
    views: Sequence[ViewResult],
    algorithm: Algorithm,
    revision: int,
    *,
    complete: bool = True,
    exam: ExamSummary | None = None,
    notes: Sequence[str] = (),
) -> MammographyCADSR:
    """The Mammography CAD SR of one study revision (same inputs as the TID 1500 SR)."""
    study_uid = check_inputs(sources, views)
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    uids = ReportUids.for_job(study_uid, algorithm.sha256, revision, "mammo-cad")
    root = hd.sr.ContainerContentItem(name=CAD_REPORT, template_id="4000")
    english = hd.sr.CodedConcept("en-US", "RFC5646", "English, US")
    items: list[hd.sr.ContentItem] = list(hd.sr.LanguageOfContentItemAndDescendants(english))
    items.extend(device_context(algorithm))
    items.append(_image_library(sources))
    items.extend(_overall_impression(views, by_uid, algorithm, complete, exam, notes))
    root.ContentSequence = hd.sr.ContentSequence(items)
    sr = MammographyCADSR(
        evidence=list(sources),
        content=root,
        series_description=CAD_SERIES_DESCRIPTION,
        **sr_document_args(uids, complete),
    )
    return sign_off(sr, algorithm)


def _image_library(sources: Sequence[Dataset]) -> hd.sr.ContainerContentItem:
    """TID 4020: every image of the study, with its laterality and view where it says them."""
    library = hd.sr.ContainerContentItem(name=IMAGE_LIBRARY, relationship_type=_R.CONTAINS)
    entries = []
    for ds in sources:
        image = hd.sr.ImageContentItem(
            name=SOURCE,
            referenced_sop_class_uid=ds.SOPClassUID,
            referenced_sop_instance_uid=ds.SOPInstanceUID,
            relationship_type=_R.CONTAINS,
        )
        context = []
        side = str(ds.get("ImageLaterality", "") or "").upper()
        if side in c.LATERALITY:
            context.append(_code(IMAGE_LATERALITY, c.LATERALITY[side], _R.HAS_ACQ_CONTEXT))
        view = _view_code(ds)
        if view is not None:
            context.append(_code(IMAGE_VIEW, view, _R.HAS_ACQ_CONTEXT))
        if context:
            image.ContentSequence = hd.sr.ContentSequence(context)
        entries.append(image)
    library.ContentSequence = hd.sr.ContentSequence(entries)
    return library


def _view_code(ds: Dataset) -> hd.sr.CodedConcept | None:
    seq = ds.get("ViewCodeSequence")
    if seq:
        item = seq[0]
        return hd.sr.CodedConcept(item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)
    return VIEW_CODES.get(str(ds.get("ViewPosition", "") or "").upper())


def _overall_impression(
    views: Sequence[ViewResult],
    by_uid: dict[str, Dataset],
    algorithm: Algorithm,
    complete: bool,
    exam: ExamSummary | None,
    notes: Sequence[str],
) -> list[hd.sr.ContentItem]:
    """TID 4001: the summary code with what was performed, then the impressions beside it
    (the IOD lets no CODE contain a CONTAINER)."""
    notes = list(notes)
    per_side: dict[str, list[hd.sr.ContentItem]] = {}
    for v in views:
        source = by_uid[v.sop_instance_uid]
        findings, off_image = drawable(v, source)
        notes.extend(off_image)
        side = v.laterality if v.laterality in ("L", "R") else "?"
        per_side.setdefault(side, []).extend(
            _single_image_finding(source, f, algorithm) for _, f in findings
        )
    summary = _code(PROCESSING_SUMMARY, _SUMMARY[(complete, any(per_side.values()))], _R.CONTAINS)
    status = SUCCEEDED if complete else PARTIALLY_SUCCEEDED
    detections = (SUMMARY_OF_DETECTIONS, SUCCESSFUL_DETECTIONS, DETECTION_PERFORMED)
    analyses = (SUMMARY_OF_ANALYSES, SUCCESSFUL_ANALYSES, ANALYSIS_PERFORMED)
    summary.ContentSequence = hd.sr.ContentSequence(
        [
            _performed(*detections, SELECTED_REGION, status, algorithm),
            _performed(*analyses, OVERALL_ANALYSIS, status, algorithm),
        ]
    )
    breasts, _, study_p, op = per_breast(views, algorithm, exam)
    out: list[hd.sr.ContentItem] = [summary]
    for side in sorted(set(per_side) | set(breasts)):
        p = breasts.get(side)
        text = f"{c.SIDE_WORD.get(side, 'unknown side')} breast"
        if p is not None:
            word = "malignant" if p >= op else "benign"
            text += f": probability of cancer {100 * p:.1f} % ({word} at operating point "
            text += f"{100 * op:.1f} %)"
        out.append(_impression(text, per_side.get(side, []), p is not None and p >= op))
    out.append(_impression(impression(views, algorithm, exam, notes), [], study_p >= op))
    return out


def _performed(
    summary_name: hd.sr.CodedConcept,
    container_name: hd.sr.CodedConcept,
    item_name: hd.sr.CodedConcept,
    item_value: hd.sr.CodedConcept,
    status: hd.sr.CodedConcept,
    algorithm: Algorithm,
) -> hd.sr.CodeContentItem:
    """TID 4015/4017 or 4016/4018: a summary status, inferred from what was performed."""
    performed = _code(item_name, item_value, _R.CONTAINS)
    performed.ContentSequence = hd.sr.ContentSequence(_algorithm_items(algorithm))
    done = hd.sr.ContainerContentItem(name=container_name, relationship_type=_R.INFERRED_FROM)
    done.ContentSequence = hd.sr.ContentSequence([performed])
    summary = _code(summary_name, status, _R.HAS_PROPERTIES)
    summary.ContentSequence = hd.sr.ContentSequence([done])
    return summary


def _impression(
    text: str, findings: list[hd.sr.ContentItem], present: bool
) -> hd.sr.ContainerContentItem:
    """TID 4003: rendering intent, the impression in words, and its findings."""
    container = hd.sr.ContainerContentItem(
        name=INDIVIDUAL_IMPRESSION, relationship_type=_R.CONTAINS
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            _code(RENDERING_INTENT, _intent(present), _R.HAS_CONCEPT_MOD),
            hd.sr.TextContentItem(
                name=IMPRESSION_DESCRIPTION, value=text, relationship_type=_R.CONTAINS
            ),
            *findings,
        ]
    )
    return container


def _single_image_finding(
    source: Dataset, finding: FindingRoi, algorithm: Algorithm
) -> hd.sr.CodeContentItem:
    """TID 4006: one located finding on one image."""
    malignant = finding.label == "malignant"
    item = _code(SINGLE_IMAGE_FINDING, SELECTED_REGION, _R.CONTAINS)
    percent = round(100.0 * finding.probability, 3)
    props: list[hd.sr.ContentItem] = [
        _code(RENDERING_INTENT, _intent(malignant), _R.HAS_CONCEPT_MOD),
        *_algorithm_items(algorithm),
        hd.sr.NumContentItem(
            name=CERTAINTY, value=percent, unit=c.PERCENT, relationship_type=_R.HAS_PROPERTIES
        ),
        hd.sr.NumContentItem(
            name=c.PROBABILITY_OF_CANCER,
            value=percent,
            unit=c.PERCENT,
            relationship_type=_R.HAS_PROPERTIES,
        ),
        _code(c.FINDING, c.MALIGNANT if malignant else c.BENIGN, _R.HAS_PROPERTIES),
    ]
    row, col = finding_centre(finding)
    props.append(_scoord(CENTER, hd.sr.GraphicTypeValues.POINT, [[col + 0.5, row + 0.5]], source))
    outline = outline_scoord(finding.outline, source)
    props.append(_scoord(OUTLINE, hd.sr.GraphicTypeValues.POLYLINE, outline, source))
    item.ContentSequence = hd.sr.ContentSequence(props)
    return item


def _scoord(name, graphic_type, points, source: Dataset) -> hd.sr.ScoordContentItem:
    """A SCOORD in the source's pixels, SELECTED FROM that image."""
    import numpy as np

    item = hd.sr.ScoordContentItem(
        name=name,
        graphic_type=graphic_type,
        graphic_data=np.asarray(points, dtype=np.float32),
        relationship_type=_R.HAS_PROPERTIES,
    )
    item.ContentSequence = hd.sr.ContentSequence(
        [hd.sr.SourceImageForRegion.from_source_image(source)]
    )
    return item


def _algorithm_items(algorithm: Algorithm) -> list[hd.sr.TextContentItem]:
    """TID 4019: the algorithm's name, version and parameters."""
    rows = [
        (ALGORITHM_NAME, lo(algorithm.name)),
        (ALGORITHM_VERSION, lo(algorithm.version)),
        (ALGORITHM_PARAMETERS, f"sha256={algorithm.sha256}"),
        (ALGORITHM_PARAMETERS, f"operating_point={algorithm.operating_point:g}"),
    ]
    return [
        hd.sr.TextContentItem(name=n, value=v, relationship_type=_R.HAS_PROPERTIES) for n, v in rows
    ]


def _intent(present: bool) -> hd.sr.CodedConcept:
    return PRESENTATION_REQUIRED if present else PRESENTATION_OPTIONAL


def _code(name, value, relationship) -> hd.sr.CodeContentItem:
    return hd.sr.CodeContentItem(name=name, value=value, relationship_type=relationship)
