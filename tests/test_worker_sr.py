"""The Structured Report: valid (dciodvfy), renderable (dsrdump), and readable back (highdicom)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import require_binary
from tests.helpers.mg import MGSpec, write_mg
from worker import reports as srmod

ALGO = srmod.Algorithm(
    name="sgc-test", version="1.2.3", sha256="ab" * 32, operating_point=0.4, positive_class="m"
)
LAYOUT = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]


def _study(folder: Path, n: int, patient_name: str = "Test^Patient") -> list[pydicom.Dataset]:
    study_uid = generate_uid()
    out = []
    for i in range(n):
        lat, view = LAYOUT[i % 4]
        spec = MGSpec(
            laterality=lat,  # type: ignore[arg-type]
            view=view,  # type: ignore[arg-type]
            study_uid=study_uid,
            seed=i,
            patient_name=patient_name,
        )
        ds = pydicom.dcmread(write_mg(folder / f"{i}.dcm", spec), stop_before_pixels=True)
        out.append(ds)
    return out


def _views(sources, probs, ood=()) -> list[srmod.ViewResult]:
    return [
        srmod.ViewResult(
            sop_instance_uid=ds.SOPInstanceUID,
            laterality=ds.ImageLaterality,
            view=LAYOUT[i % 4][1],
            probability=p,
            bbox=(10 + i, 0 if ds.ImageLaterality == "L" else 40, 240, 150 + i),
            ood=i in ood,
        )
        for i, (ds, p) in enumerate(zip(sources, probs, strict=True))
    ]


def _validate(path: Path) -> None:
    """dciodvfy: 0 errors; dsrdump: renders the document."""
    dciodvfy = require_binary("dciodvfy")
    out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("Error")]
    assert errors == [], out.stderr
    dump = subprocess.run([require_binary("dsrdump"), str(path)], capture_output=True)
    assert dump.returncode == 0, dump.stderr
    text = dump.stdout.decode("utf-8", errors="replace")
    assert "Imaging Measurement Report" in text and "Probability of cancer" in text


def _group_values(doc) -> list[dict]:
    out = []
    for g in doc.content.get_planar_roi_measurement_groups():
        (m,) = g.get_measurements(name=srmod.PROBABILITY_OF_CANCER)
        (site,) = g.finding_sites
        out.append(
            {
                "uid": g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
                "probability": float(m.value),
                "unit": m.unit.value,
                "finding": g.finding_type.meaning,
                "laterality": site.laterality.meaning if site.laterality else None,
                "ood": [e.name.value for e in g.get_qualitative_evaluations()],
                "polyline": list(g.roi.GraphicData),
                "tracking_uid": g.tracking_uid,
                "tracking_id": g.tracking_identifier,
            }
        )
    return out


@pytest.mark.parametrize("n", [4, 2, 1])
def test_report_is_valid_and_round_trips(tmp_path: Path, n: int) -> None:
    sources = _study(tmp_path, n)
    probs = [0.1, 0.55, 0.3, 0.9][:n]
    views = _views(sources, probs)
    report = srmod.build_report(sources, views, ALGO, revision=3)
    path = tmp_path / "sr.dcm"
    srmod.write_report(report, path)
    _validate(path)

    doc = hd.sr.srread(path)
    assert isinstance(doc, hd.sr.ComprehensiveSR)
    assert doc.StudyInstanceUID == sources[0].StudyInstanceUID
    assert doc.PatientID == sources[0].PatientID
    assert doc.Modality == "SR" and doc.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert doc.VerificationFlag == "UNVERIFIED" and doc.CompletionFlag == "COMPLETE"
    assert "research" in doc.SeriesDescription.lower()
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in doc.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {ds.SOPInstanceUID for ds in sources}
    algo_items = [
        e
        for e in doc.ContributingEquipmentSequence
        if e.PurposeOfReferenceCodeSequence[0].CodeValue == "Newcode1"
    ]
    assert len(algo_items) == 1
    assert algo_items[0].PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator == "99IHE"
    assert algo_items[0].SoftwareVersions == "1.2.3"
    assert algo_items[0].ManufacturerModelName == "sgc-test"

    groups = _group_values(doc)
    assert [g["uid"] for g in groups] == [ds.SOPInstanceUID for ds in sources]
    for g, v, ds in zip(groups, views, sources, strict=True):
        assert g["probability"] == pytest.approx(100 * v.probability, abs=1e-3)
        assert g["unit"] == "%"
        assert g["finding"] == ("Malignant" if v.probability >= ALGO.operating_point else "Benign")
        assert g["laterality"] == {"L": "Left", "R": "Right"}[ds.ImageLaterality]
        assert g["ood"] == []
        r0, c0, r1, c1 = v.bbox
        assert g["polyline"] == [c0, r0, c1, r0, c1, r1, c0, r1, c0, r0]
        assert g["tracking_uid"] and g["tracking_id"]
    assert len({g["tracking_uid"] for g in groups}) == n

    summary = _summary(doc)
    worst = max(probs)
    assert summary["finding"] == ("Malignant" if worst >= ALGO.operating_point else "Benign")
    worst_lat = sources[probs.index(worst)].ImageLaterality
    assert summary["site"] == {"L": "Left breast", "R": "Right breast"}[worst_lat]
    assert f"{100 * worst:.1f} %" in summary["impression"]


def _summary(doc) -> dict:
    root = doc.ContentSequence
    (container,) = [
        item for item in root if item.ConceptNameCodeSequence[0].CodeValue == "C0034375"
    ]
    values = {}
    for item in container.ContentSequence:
        code = item.ConceptNameCodeSequence[0].CodeValue
        if code == "121071":
            values["finding"] = item.ConceptCodeSequence[0].CodeMeaning
        elif code == "363698007":
            values["site"] = item.ConceptCodeSequence[0].CodeMeaning
        elif code == "121073":
            values["impression"] = item.TextValue
    return values


def test_ood_view_is_flagged_and_partial_study_is_marked(tmp_path: Path) -> None:
    sources = _study(tmp_path, 4)
    views = _views(sources[:3], [0.2, 0.3, 0.1], ood={1})
    path = tmp_path / "sr.dcm"
    srmod.write_report(srmod.build_report(sources, views, ALGO, revision=1, complete=False), path)
    _validate(path)
    doc = hd.sr.srread(path)
    assert doc.CompletionFlag == "PARTIAL"
    groups = _group_values(doc)
    assert [g["ood"] for g in groups] == [[], ["OOD"], []]
    (flag,) = doc.content.get_planar_roi_measurement_groups()[1].get_qualitative_evaluations()
    assert flag.value.meaning == "Yes" and flag.name.scheme_designator == "99SGC"
    declared = {d.CodingSchemeDesignator for d in doc.CodingSchemeIdentificationSequence}
    assert "99SGC" in declared
    assert "flagged out of distribution" in _summary(doc)["impression"]


def test_non_ascii_patient_name_is_utf8(tmp_path: Path) -> None:
    name = "Müller-Łukasiewicz^Zoë=山田^太郎"
    sources = _study(tmp_path, 2, patient_name="Placeholder^Name")
    for ds in sources:
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = name
    path = tmp_path / "sr.dcm"
    srmod.write_report(srmod.build_report(sources, _views(sources, [0.5, 0.2]), ALGO, 1), path)
    _validate(path)
    raw = pydicom.dcmread(path)
    assert raw.SpecificCharacterSet == "ISO_IR 192"
    assert str(raw.PatientName) == name
    assert name.encode("utf-8") in path.read_bytes()
    dump = subprocess.run([require_binary("dsrdump"), str(path)], capture_output=True)
    assert "Müller-Łukasiewicz".encode() in dump.stdout


def test_uids_are_deterministic_per_study_model_and_revision(tmp_path: Path) -> None:
    sources = _study(tmp_path, 2)
    views = _views(sources, [0.5, 0.2])
    a = srmod.build_report(sources, views, ALGO, revision=1)
    b = srmod.build_report(sources, views, ALGO, revision=1)
    c = srmod.build_report(sources, views, ALGO, revision=2)
    assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)
    assert a.SOPInstanceUID != c.SOPInstanceUID and a.SeriesInstanceUID != c.SeriesInstanceUID
    other_model = srmod.Algorithm("sgc-test", "1.2.4", "cd" * 32, 0.4, "m")
    d = srmod.build_report(sources, views, other_model, revision=1)
    assert d.SOPInstanceUID != a.SOPInstanceUID
    for uid in (a.SOPInstanceUID, a.SeriesInstanceUID):
        assert uid.startswith("2.25.") and len(uid) <= 64
        assert pydicom.uid.UID(uid).is_valid


def test_bad_inputs_are_refused_with_a_reason(tmp_path: Path) -> None:
    sources = _study(tmp_path, 1)
    good = _views(sources, [0.5])[0]
    with pytest.raises(ValueError, match="does not fit"):
        srmod.build_report(
            sources,
            [srmod.ViewResult(good.sop_instance_uid, "L", "CC", 0.5, (0, 0, 9999, 10))],
            ALGO,
            1,
        )
    with pytest.raises(ValueError, match="not among the sources"):
        srmod.build_report(
            sources, [srmod.ViewResult("1.2.3", "L", "CC", 0.5, (0, 0, 10, 10))], ALGO, 1
        )
    with pytest.raises(ValueError, match="at least one classified view"):
        srmod.build_report(sources, [], ALGO, 1)
    with pytest.raises(ValueError, match="outside"):
        srmod.build_report(
            sources,
            [srmod.ViewResult(good.sop_instance_uid, "L", "CC", 1.5, (0, 0, 10, 10))],
            ALGO,
            1,
        )


def test_located_findings_get_their_own_groups_on_their_place(tmp_path: Path) -> None:
    """Each finding is a TID 1410 group whose outline lies where the finding is, with its
    class and P(malignant); the view's breast group and the exam summary stay."""
    sources = _study(tmp_path, 2)
    ring = tuple((100 + 20 * np.sin(a), 60 + 20 * np.cos(a)) for a in np.linspace(0, 6.28, 9))
    views = _views(sources, [0.9, 0.1])
    views[0] = replace(
        views[0],
        findings=(
            srmod.FindingRoi("malignant", 0.93, ring),
            srmod.FindingRoi("benign", 0.05, tuple((r + 50, c) for r, c in ring)),
        ),
    )
    exam = srmod.ExamSummary({"L": 0.9, "R": 0.1}, 0.91, 0.3)
    sr = srmod.build_report(sources, views, ALGO, 1, exam=exam)
    path = tmp_path / "sr.dcm"
    srmod.write_report(sr, path)
    _validate(path)
    doc = hd.sr.srread(path)
    groups = _group_values(doc)
    assert len(groups) == 4
    by_p = {g["probability"]: g for g in groups}
    assert by_p[93.0]["finding"] == "Malignant" and by_p[5.0]["finding"] == "Benign"
    xs, ys = by_p[93.0]["polyline"][0::2], by_p[93.0]["polyline"][1::2]
    assert abs(np.mean(xs[:-1]) - 60.5) < 3 and abs(np.mean(ys[:-1]) - 100.5) < 3
    assert xs[0] == xs[-1] and ys[0] == ys[-1]
    text = path.read_bytes()
    assert b"Study probability of cancer 91.0 %" in text and b"2 located finding(s)" in text
