"""The evidence map as a DICOM Segmentation on its source image: the overlay a viewer shows.

Why BINARY segments at levels of the view's peak, not a FRACTIONAL probability segment or a
Parametric Map:

- The map is the lesion finder's malignant-vs-normal denoising evidence in nats per pixel. It
  is not a probability: per-pixel values are of the order of 0.01 nats (the window's class
  score sums thousands of them), so a per-pixel logistic would read 50 % everywhere.
- The pinned OHIF (3.13.2) refuses a FRACTIONAL segmentation whose values are not 0 or the
  maximum ("Fractional segmentations are not yet supported"), and loads a Parametric Map only
  onto a reconstructed volume ("stack viewport PMAP is not supported yet"); one mammogram is
  a single-frame stack.

So each view with a map gets one SEG object with nested binary segments where the evidence
reaches a fixed share of that view's peak (:data:`LEVELS`): the places the model looked at
most, drawn over the image. The segment labels say so; the probabilities are in the SRs.
highdicom writes one SEG per source image when, as for mammograms, the source has no Frame of
Reference; each gets a series of its own (OHIF shows only a series' last SEG) and a nominal
plane orientation (OHIF's SEG loader stops without one). tests/test_viewer_ohif.py shows OHIF
painting it where the segment is.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from sgc_core.results import EvidenceMap
from worker.reports.common import (
    MANUFACTURER,
    Algorithm,
    ReportUids,
    ViewResult,
    derived_uid,
    lo,
)

SEG_SERIES_DESCRIPTION = "Research AI evidence (SGC) - not for diagnosis -"
#: Shares of the view's peak evidence that bound the nested segments (outer to inner), and
#: the colour a viewer should draw each in (yellow, then red: the hotter, the redder).
LEVELS = (0.5, 0.75)
COLOURS = ((255, 215, 0), (230, 25, 25))
_CATEGORY = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
_TYPE = hd.sr.CodedConcept("363346000", "SCT", "Malignant neoplastic disease")


def build_segmentations(
    sources: Sequence[Dataset],
    views: Sequence[ViewResult],
    algorithm: Algorithm,
    revision: int,
) -> tuple[list[hd.seg.Segmentation], list[str]]:
    """One SEG per view that has an evidence map with positive evidence, and a note for each
    view that gets none (why)."""
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    out, notes = [], []
    for number, view in enumerate(views, start=1):
        source = by_uid[view.sop_instance_uid]
        if view.evidence is None:
            continue  # a whole-view model makes no map: nothing is missing
        masks = evidence_masks(view.evidence, source)
        if masks is None:
            notes.append(f"{view.name}: no positive evidence, no overlay")
            continue
        out.append(_segmentation(source, view, masks, algorithm, revision, number))
    return out, notes


def evidence_masks(evidence: EvidenceMap, source: Dataset) -> np.ndarray | None:
    """(rows, cols, len(LEVELS)) bool masks of the nested segments on the source image's
    pixel grid, or None without any positive evidence."""
    grid = evidence.to_source_grid((int(source.Rows), int(source.Columns)))
    values = np.nan_to_num(grid.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max())
    if peak <= 0.0:
        return None
    return np.stack([values >= level * peak for level in LEVELS], axis=-1)


def _segmentation(
    source: Dataset,
    view: ViewResult,
    masks: np.ndarray,
    algorithm: Algorithm,
    revision: int,
    number: int,
) -> hd.seg.Segmentation:
    uids = ReportUids.for_job(source.StudyInstanceUID, algorithm.sha256, revision, "seg")
    algo = hd.AlgorithmIdentificationSequence(
        name=lo(algorithm.name),
        version=lo(algorithm.version),
        family=codes.cid7162.ArtificialIntelligence,
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=lo(f"evidence >= {100 * level:.0f}% of view peak"),
            segmented_property_category=_CATEGORY,
            segmented_property_type=_TYPE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            display_color=hd.color.CIELabColor.from_rgb(*rgb),
        )
        for i, (level, rgb) in enumerate(zip(LEVELS, COLOURS, strict=True), start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=masks[None].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        # A series per view: OHIF shows one SEG per series (its last instance).
        series_instance_uid=derived_uid(uids.series_instance_uid, view.sop_instance_uid),
        series_number=uids.series_number,
        sop_instance_uid=derived_uid(uids.sop_instance_uid, view.sop_instance_uid),
        instance_number=number,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=lo(algorithm.name),
        software_versions=lo(algorithm.version),
        device_serial_number=algorithm.sha256[:16],
        content_label="EVIDENCE",
        content_description=lo(f"Malignant-vs-normal evidence, {view.name}"),
        omit_empty_frames=True,
    )
    seg.SeriesDescription = lo(f"{SEG_SERIES_DESCRIPTION} {view.name}")
    # Type 2C without a Frame of Reference (General Image module): as on the source.
    seg.PatientOrientation = source.get("PatientOrientation", "")
    # The frames lie in the source image's plane. OHIF's SEG loader reads the orientation
    # from here and stops without it; a projection image states none, so the nominal one
    # (rows along x, columns along y) that viewers assume for such images is written.
    plane = Dataset()
    plane.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = [plane]
    return seg
