"""The evidence segmentation and the Mammography CAD SR, and what every report form does with
bad input: valid (dciodvfy 0 errors), readable back, the marks where the finding is, and the
text saying what is missing."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from sgc_core.results import EvidenceMap
from tests.conftest import require_binary
from tests.helpers.mg import MGSpec, mg_dataset
from worker.reports import Algorithm, ExamSummary, FindingRoi, ViewResult, write_report
from worker.reports.cad import MAMMOGRAPHY_CAD_SR, build_cad_report
from worker.reports.formats import StudyReportInput, build_objects
from worker.reports.seg import LEVELS, build_segmentations

ALGO = Algorithm("sgc-test", "2.0", "cd" * 32, 0.5, "malignant")
ALL = ("tid1500", "seg", "mammo-cad")


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run([require_binary("dciodvfy"), str(path)], capture_output=True, text=True)
    return [ln for ln in out.stderr.splitlines() if ln.startswith("Error")]


def dsrdump(path: Path) -> str:
    out = subprocess.run([require_binary("dsrdump"), str(path)], capture_output=True)
    assert out.returncode == 0, out.stderr
    assert b"E:" not in out.stderr, out.stderr  # dcmtk's IOD relationship checks
    return out.stdout.decode("utf-8", errors="replace")


def _sources(n: int = 2, **spec) -> list[pydicom.Dataset]:
    study = generate_uid()
    layout = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    out = []
    for i in range(n):
        ds = mg_dataset(
            MGSpec(study_uid=study, laterality=layout[i][0], view=layout[i][1], seed=i, **spec)
        )
        del ds.PixelData  # the reports read metadata only, as the worker hands them
        out.append(ds)
    return out


def _ring(row: float, col: float, radius: float = 15.0) -> tuple[tuple[float, float], ...]:
    return tuple(
        (row + radius * np.sin(a), col + radius * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 17)
    )


def _blob_map(ds: pydicom.Dataset, row: float, col: float) -> EvidenceMap:
    """A map on a 4x coarser grid than the source, peaking at (row, col) of the source."""
    rows, cols = int(ds.Rows) // 4, int(ds.Columns) // 4
    i, j = np.mgrid[:rows, :cols]
    values = 0.02 * np.exp(-((i * 4 + 2 - row) ** 2 + (j * 4 + 2 - col) ** 2) / (2 * 12.0**2))
    return EvidenceMap(values.astype(np.float32) - 0.002, (2.0, 2.0), (4.0, 4.0), False)


def _views(sources, finding_at=(120.0, 70.0)) -> list[ViewResult]:
    a, b = sources[:2]
    left = ViewResult(
        a.SOPInstanceUID,
        "L",
        "CC",
        0.81,
        (5, 0, 250, 160),
        findings=(FindingRoi("malignant", 0.77, _ring(*finding_at), finding_at, 15.0, 42.46),),
        evidence=_blob_map(a, *finding_at),
    )
    right = ViewResult(b.SOPInstanceUID, "R", "CC", 0.12, (5, 30, 250, 192))
    return [left, right]


def _write_all(tmp_path: Path, report: StudyReportInput) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for i, obj in enumerate(build_objects(report, ALL)):
        path = tmp_path / f"{i}.{obj.suffix}.dcm"
        write_report(obj.dataset, path)
        assert dciodvfy_errors(path) == [], (obj.form, path)
        out.setdefault(obj.form, []).append(path)
    return out


def test_evidence_segmentation_lies_on_the_evidence_and_round_trips(tmp_path: Path) -> None:
    sources = _sources()
    views = _views(sources)
    segs, notes = build_segmentations(sources, views, ALGO, revision=2)
    assert len(segs) == 1 and notes == []  # the right view has no map: nothing to draw
    path = tmp_path / "seg.dcm"
    write_report(segs[0], path)
    assert dciodvfy_errors(path) == []
    seg = pydicom.dcmread(path)  # highdicom's reader wants pixel measures a mammogram lacks
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    refs = {
        r.ReferencedSOPInstanceUID
        for s in seg.ReferencedSeriesSequence
        for r in s.ReferencedInstanceSequence
    }
    assert refs == {sources[0].SOPInstanceUID}
    assert [d.SegmentLabel for d in seg.SegmentSequence] == [
        f"evidence >= {100 * lv:.0f}% of view peak" for lv in LEVELS
    ]
    frame_segments = [
        f.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        for f in seg.PerFrameFunctionalGroupsSequence
    ]
    assert frame_segments == [1, 2]
    masks = seg.pixel_array  # (frames = segments, rows, cols)
    inner = masks[-1].astype(bool)
    rows, cols = np.nonzero(inner)
    # The innermost segment is the evidence peak: around the finding, within its radius.
    assert abs(rows.mean() - 120) < 8 and abs(cols.mean() - 70) < 8
    assert masks[0].sum() > inner.sum() > 0
    plane = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    assert list(plane.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]  # what OHIF needs
    two = [views[0], replace(views[1], evidence=_blob_map(sources[1], 60.0, 90.0))]
    segs_two, _ = build_segmentations(sources, two, ALGO, revision=2)
    assert len({s.SeriesInstanceUID for s in segs_two}) == 2  # OHIF shows one SEG a series
    again, _ = build_segmentations(sources, views, ALGO, revision=2)
    assert again[0].SOPInstanceUID == segs[0].SOPInstanceUID  # a re-run replaces, never adds
    other, _ = build_segmentations(sources, views, ALGO, revision=3)
    assert other[0].SOPInstanceUID != segs[0].SOPInstanceUID


def test_no_positive_evidence_gives_no_overlay_and_says_so() -> None:
    sources = _sources()
    views = _views(sources)
    flat = EvidenceMap(np.full((8, 8), -0.01, np.float32), (0.0, 0.0), (32.0, 24.0), False)
    views[0] = replace(views[0], evidence=flat)
    report = StudyReportInput(tuple(sources), tuple(views), ALGO, 1)
    objects = build_objects(report, ALL)
    assert [o.form for o in objects] == ["tid1500", "mammo-cad"]
    texts = [i.TextValue for i in _walk(objects[0].dataset) if "TextValue" in i]
    assert any("left CC: no positive evidence, no overlay" in t for t in texts)


def test_mammography_cad_sr_is_valid_and_draws_the_finding(tmp_path: Path) -> None:
    sources = _sources()
    exam = ExamSummary({"L": 0.8, "R": 0.1}, 0.79, 0.5)
    sr = build_cad_report(sources, _views(sources), ALGO, 1, exam=exam)
    path = tmp_path / "cad.dcm"
    write_report(sr, path)
    assert dciodvfy_errors(path) == []
    text = dsrdump(path)
    assert "Mammography CAD SR Document" in text and "Certainty of Finding" in text
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == MAMMOGRAPHY_CAD_SR and ds.Modality == "SR"
    assert ds.ConceptNameCodeSequence[0].CodeValue == "111036"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "4000"
    items = list(_walk(ds))
    summary = _one(items, "111017")
    assert summary.ConceptCodeSequence[0].CodeValue == "111242"  # succeeded, with findings
    centre = _one(items, "111010")
    assert centre.GraphicType == "POINT"
    assert centre.GraphicData == pytest.approx([70.5, 120.5])  # (column, row), pixel centre
    assert centre.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        sources[0].SOPInstanceUID
    )
    outline = _one(items, "111041")
    xs, ys = outline.GraphicData[0::2], outline.GraphicData[1::2]
    assert np.hypot(np.array(xs) - 70.5, np.array(ys) - 120.5) == pytest.approx(15.0, abs=0.1)
    certainty = _one(items, "111012")
    assert float(certainty.MeasuredValueSequence[0].NumericValue) == pytest.approx(77.0)
    names = {i.TextValue for i in items if _code(i) == "111001"}
    assert names == {"sgc-test"}  # TID 4019 on the detection, analysis and finding
    impressions = [i.TextValue for i in items if _code(i) == "111033"]
    assert any(t.startswith("left breast: probability of cancer 80.0 %") for t in impressions)
    assert any(t.startswith("right breast: probability of cancer 10.0 %") for t in impressions)
    assert any(t.startswith("Study probability of cancer 79.0 %") for t in impressions)


def test_finding_outside_the_image_is_not_drawn_and_the_reports_say_so(tmp_path: Path) -> None:
    sources = _sources()
    views = _views(sources)
    off = FindingRoi("malignant", 0.9, _ring(-40.0, 70.0), (-40.0, 70.0), 15.0)
    views[0] = replace(views[0], findings=(*views[0].findings, off))
    written = _write_all(tmp_path, StudyReportInput(tuple(sources), tuple(views), ALGO, 1))
    note = b"left CC finding 2 lies outside the image after mapping (row -40, column 70)"
    sr = hd.sr.srread(written["tid1500"][0])
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == 2 + 1  # two views, one drawable finding
    assert note in written["tid1500"][0].read_bytes()
    cad = pydicom.dcmread(written["mammo-cad"][0])
    assert len([i for i in _walk(cad) if _code(i) == "111059"]) == 1
    assert note in written["mammo-cad"][0].read_bytes()
    dsrdump(written["mammo-cad"][0])


def test_source_without_pixel_spacing_still_validates_and_sizes_are_missing(
    tmp_path: Path,
) -> None:
    sources = _sources()
    for ds in sources:
        for kw in (
            "ImagerPixelSpacing",
            "PixelSpacing",
            "PixelSpacingCalibrationType",
            "PixelSpacingCalibrationDescription",
        ):
            if kw in ds:
                delattr(ds, kw)
    written = _write_all(
        tmp_path, StudyReportInput(tuple(sources), tuple(_views(sources)), ALGO, 1)
    )
    assert set(written) == set(ALL)
    data = written["tid1500"][0].read_bytes()
    assert b"left CC has no pixel spacing: finding sizes are not reported" in data
    sr = hd.sr.srread(written["tid1500"][0])
    finding = sr.content.get_planar_roi_measurement_groups()[1]
    assert [m.name.meaning for m in finding.get_measurements()] == ["Probability of cancer"]


def test_finding_size_and_depth_are_reported_where_the_image_states_its_spacing(
    tmp_path: Path,
) -> None:
    sources = _sources()
    written = _write_all(
        tmp_path, StudyReportInput(tuple(sources), tuple(_views(sources)), ALGO, 1)
    )
    sr = hd.sr.srread(written["tid1500"][0])
    finding = sr.content.get_planar_roi_measurement_groups()[1]
    (diameter,) = finding.get_measurements(name=hd.sr.CodedConcept("81827009", "SCT", "Diameter"))
    assert float(diameter.value) == pytest.approx(3.0)  # 2 x 15 px x 0.1 mm
    assert diameter.unit.value == "mm"
    (depth,) = finding.get_measurements(name=hd.sr.CodedConcept("121242", "DCM", "Distance from nipple"))  # fmt: skip
    assert float(depth.value) == pytest.approx(42.5) and depth.unit.value == "mm"


def test_view_not_classified_is_named_in_every_report(tmp_path: Path) -> None:
    """A view whose preprocessing failed is evidence only: the reports are PARTIAL and say
    which image is missing and why."""
    sources = _sources(3)
    note = f"image {sources[2].SOPInstanceUID} (L MLO) not classified: no breast found"
    report = StudyReportInput(
        tuple(sources), tuple(_views(sources)), ALGO, 1, complete=False, notes=(note,)
    )
    written = _write_all(tmp_path, report)
    for form in ("tid1500", "mammo-cad"):
        ds = pydicom.dcmread(written[form][0])
        assert ds.CompletionFlag == "PARTIAL"
        assert note.encode() in written[form][0].read_bytes()
    cad = pydicom.dcmread(written["mammo-cad"][0])
    assert _one(list(_walk(cad)), "111017").ConceptCodeSequence[0].CodeValue == "111244"


def _walk(ds):
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _walk(item)


def _code(item) -> str | None:
    seq = item.get("ConceptNameCodeSequence")
    return seq[0].CodeValue if seq else None


def _one(items, code: str):
    (found,) = [i for i in items if _code(i) == code]
    return found
