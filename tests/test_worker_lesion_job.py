"""A job run by a lesion-finder model: the typed result reaches the database and the SR.

The network is untrained (tests/helpers/lesion_model.py); the card is a real lesion card,
so the worker takes the lesion-finder path: every view's prediction stores its findings in
source coordinates, and the SR holds one TID 1410 group per finding besides the view's own.
Runs on SQLite and PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from sqlalchemy import func, select, update

from db.models import Delivery, Job, JobState, Prediction, Report
from db.session import upgrade
from tests.helpers.lesion_model import write_lesion_model
from tests.helpers.mg import MGSpec, write_mg
from tests.helpers.orthanc import orthanc_server
from tests.test_worker_pipeline import deliver_until_settled, ingest_study, make_settings, run_job
from tests.test_worker_reports import dciodvfy_errors
from worker.reports.cad import MAMMOGRAPHY_CAD_SR
from worker.runtime import sessions_for

SEG = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory) -> Path:
    return write_lesion_model(tmp_path_factory.mktemp("lesion"))


def test_job_stores_located_findings_and_draws_them(
    tmp_path: Path, database_url: str, lesion_model: Path
) -> None:
    settings = make_settings(tmp_path, database_url, lesion_model, [])
    job_id = ingest_study(settings, n=4)
    result = run_job(settings, job_id)
    assert result is not None and result.report_id is not None
    with sessions_for(settings)() as session:
        assert session.get(Job, job_id).state == JobState.done
        preds = session.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        assert len(preds) == 4
        n_findings = 0
        for p in preds:
            assert 0.0 <= p.probabilities["malignant"] <= 1.0
            assert p.extra["method"].startswith("lesion-scan")
            for f in p.extra["findings"]:
                n_findings += 1
                r0, c0, r1, c1 = f["box"]
                assert 0 <= r0 < r1 <= 256 and 0 <= c0 < c1 <= 192
                assert f["nipple_distance_mm"] >= 0.0
        assert n_findings >= 4
        path = settings.resolved_storage_dir / session.get(Report, result.report_id).path
    doc = hd.sr.srread(path)
    groups = doc.content.get_planar_roi_measurement_groups()
    assert len(groups) == 4 + n_findings
    depth = hd.sr.CodedConcept("121242", "DCM", "Distance from nipple")
    assert sum(len(g.get_measurements(name=depth)) for g in groups) == n_findings


ALL_FORMATS = "tid1500,seg,mammo-cad"


def test_every_report_form_is_stored_delivered_once_and_rerun_without_duplicates(
    tmp_path: Path, lesion_model: Path
) -> None:
    """SGC_REPORT_FORMATS=tid1500,seg,mammo-cad: the SR, one SEG per view with evidence and
    the CAD SR each get a Report row and a Delivery, all reach the archive, and a re-run of
    the job finds the same rows (same UIDs) instead of adding any."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    with orthanc_server(tmp_path / "orthanc") as orthanc:
        settings = make_settings(tmp_path, url, lesion_model, [orthanc.node])
        settings = settings.model_copy(update={"report_formats": ALL_FORMATS.split(",")})
        job_id = ingest_study(settings, n=4)
        first = run_job(settings, job_id)
        assert first is not None and len(first.report_ids) == len(first.delivery_ids)
        sessions = sessions_for(settings)
        with sessions() as session:
            reports = session.scalars(select(Report).where(Report.job_id == job_id)).all()
            classes = [
                pydicom.dcmread(settings.resolved_storage_dir / r.path).SOPClassUID for r in reports
            ]
            study_uid = session.get(Job, job_id).study.study_uid
        assert classes[0] == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR first
        assert classes.count(SEG) >= 1 and classes[-1] == MAMMOGRAPHY_CAD_SR
        for report_id in first.report_ids:
            deliver_until_settled(settings, report_id)
        stored = {
            i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.instances_of_study(study_uid)
        }
        assert {r.sop_instance_uid for r in reports} <= stored

        with sessions.begin() as session:
            session.execute(update(Job).where(Job.id == job_id).values(state=JobState.pending))
        second = run_job(settings, job_id)
        assert second is not None and second.report_ids == first.report_ids
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Report)) == len(reports)
            assert session.scalar(select(func.count()).select_from(Delivery)) == len(reports)


def test_a_form_that_cannot_be_built_leaves_nothing_written_or_delivered(
    tmp_path: Path, lesion_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All objects are built before any is written: when the last one fails, no file, no
    Report and no Delivery exists (the job is retried, then failed with the reason)."""
    from worker.reports import formats

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    settings = make_settings(tmp_path, url, lesion_model, ["ARCHIVE@127.0.0.1:1"])
    settings = settings.model_copy(update={"report_formats": ALL_FORMATS.split(",")})

    def broken(*args, **kwargs):
        raise ValueError("injected: the CAD SR cannot be built")

    monkeypatch.setattr(formats, "build_cad_report", broken)
    job_id = ingest_study(settings, n=2)
    with pytest.raises(ValueError, match="injected"):
        run_job(settings, job_id)
    assert not (settings.resolved_storage_dir / "reports").exists()
    with sessions_for(settings)() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_a_view_that_cannot_be_classified_is_named_in_every_valid_report(
    tmp_path: Path, lesion_model: Path
) -> None:
    """One image without pixel data in the study: the job is done, and every report object
    (SR, SEGs, CAD SR) passes dciodvfy; both SRs are PARTIAL and name the image and why."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    settings = make_settings(tmp_path, url, lesion_model, [])
    settings = settings.model_copy(update={"report_formats": ALL_FORMATS.split(",")})
    broken = pydicom.dcmread(write_mg(tmp_path / "src.dcm", MGSpec(laterality="R")))
    del broken.PixelData
    broken.save_as(tmp_path / "nopix.dcm")
    job_id = ingest_study(settings, n=2, extra_files=[tmp_path / "nopix.dcm"])
    result = run_job(settings, job_id)
    assert result is not None and len(result.report_ids) >= 3
    with sessions_for(settings)() as session:
        assert session.get(Job, job_id).state == JobState.done
        paths = [
            settings.resolved_storage_dir / session.get(Report, i).path for i in result.report_ids
        ]
    for path in paths:
        assert dciodvfy_errors(path) == [], path
        ds = pydicom.dcmread(path)
        if ds.Modality == "SR":
            assert ds.CompletionFlag == "PARTIAL"
            text = path.read_bytes()
            assert f"image {broken.SOPInstanceUID} (R CC) not classified".encode() in text
            assert b"pixel data" in text


def test_a_pair_card_reads_each_breast_as_one_and_names_a_view_read_alone(
    tmp_path: Path, database_url: str
) -> None:
    """L CC, R CC, L MLO: the left views share one feature and so one probability, R CC has
    no partner and the SR says it was read alone."""
    model = write_lesion_model(tmp_path / "pair", view_feature="pair")
    settings = make_settings(tmp_path, database_url, model, [])
    job_id = ingest_study(settings, n=3)
    result = run_job(settings, job_id)
    assert result is not None and result.report_id is not None
    with sessions_for(settings)() as session:
        preds = session.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        by_view = {(p.extra["laterality"], p.extra["view"]): p for p in preds}
        left = [by_view[("L", "CC")], by_view[("L", "MLO")]]
        assert left[0].probabilities["malignant"] == left[1].probabilities["malignant"]
        assert all(p.extra["method"].endswith("+pair") for p in preds)
        marks = {k: {f["in_partner_view"] for f in p.extra["findings"]} for k, p in by_view.items()}
        paired = marks[("L", "CC")] | marks[("L", "MLO")]
        assert marks[("R", "CC")] <= {None} and paired and paired <= {True, False}
        alone = by_view[("R", "CC")].instance.sop_instance_uid
        path = settings.resolved_storage_dir / session.get(Report, result.report_id).path
    text = path.read_bytes()
    assert f"image {alone} (R CC) read without the other projection".encode() in text
    assert text.count(b"read without the other projection") == 1
