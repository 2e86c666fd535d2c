"""The worker's job logic in-process, on SQLite and PostgreSQL, with a real model and Orthanc:
claim, classify, predictions, SR, deliveries, idempotent re-runs, archive outages and refusals.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select, update

from db.models import Delivery, DeliveryState, Instance, Job, JobState, Prediction, Report, Study
from sgc_config.settings import Settings
from tests.helpers.mg import MGSpec, write_mg
from tests.helpers.orthanc import Orthanc, orthanc_server
from worker import classify, lease
from worker import reports as sr
from worker.deliver import deliver_pending
from worker.runtime import classifier_for, sessions_for

LAYOUT = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]


def make_settings(tmp: Path, database_url: str, model: Path, archive: list[str]) -> Settings:
    return Settings(
        data_dir=tmp / "data",
        database_url=database_url,
        model=model,
        device="cpu",
        archive=",".join(archive),  # type: ignore[arg-type]
        resend_after=2.0,
        delivery_retry_base=0.2,
        delivery_retry_max=0.5,
        delivery_give_up=600.0,
    )


def ingest_study(settings: Settings, n: int = 4, extra_files: list[Path] | None = None) -> int:
    """Record a study the way the SCP does (files in storage, Instance rows, a pending Job)."""
    storage = settings.resolved_storage_dir
    study_uid = generate_uid()
    paths = []
    for i in range(n):
        lat, view = LAYOUT[i % 4]
        spec = MGSpec(
            laterality=lat,  # type: ignore[arg-type]
            view=view,  # type: ignore[arg-type]
            study_uid=study_uid,
            seed=i,
            patient_name="Ærøskøbing^Åse",
        )
        paths.append(write_mg(storage / study_uid / f"{spec.sop_instance_uid}.dcm", spec))
    for extra in extra_files or []:
        ds = pydicom.dcmread(extra)
        ds.StudyInstanceUID = study_uid
        target = storage / study_uid / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target)
        paths.append(target)
    sessions = sessions_for(settings)
    with sessions.begin() as session:
        study = Study(study_uid=study_uid, received_rev=1, jobbed_rev=1)
        session.add(study)
        session.flush()
        for p in paths:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            data = p.read_bytes()
            session.add(
                Instance(
                    study_id=study.id,
                    series_uid=ds.SeriesInstanceUID,
                    sop_instance_uid=ds.SOPInstanceUID,
                    sop_class_uid=ds.SOPClassUID,
                    transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
                    path=str(p.relative_to(storage)),
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    calling_aet="TEST",
                )
            )
        job = Job(study_id=study.id, revision=1, state=JobState.pending)
        session.add(job)
        session.flush()
        return job.id


def run_job(settings: Settings, job_id: int) -> classify.JobResult | None:
    sessions = sessions_for(settings)
    token = lease.claim(sessions, job_id, lease.lease_seconds(settings))
    assert token is not None
    return classify.run(sessions, settings, classifier_for(settings), job_id, token)


def deliver_until_settled(settings: Settings, report_id: int, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        due = deliver_pending(sessions_for(settings), settings, report_id)
        if due is None:
            return
        time.sleep(min(due, 0.5) + 0.05)
    raise AssertionError("deliveries still pending after the deadline")


def check_sr_in_orthanc(orthanc: Orthanc, settings: Settings, job_id: int) -> dict:
    """The archive holds exactly one SR for the study, referencing every view, with the
    probabilities and findings the database recorded."""
    sessions = sessions_for(settings)
    with sessions() as session:
        job = session.get(Job, job_id)
        study_uid = job.study.study_uid
        preds = {
            p.instance.sop_instance_uid: p
            for p in session.scalars(select(Prediction).where(Prediction.job_id == job_id))
        }
        (report,) = job.reports
    (inst,) = orthanc.sr_instances(study_uid)
    assert inst["MainDicomTags"]["SOPInstanceUID"] == report.sop_instance_uid
    path = settings.data_dir / "from_orthanc.dcm"
    path.write_bytes(orthanc.file_of(inst["ID"]))
    doc = hd.sr.srread(path)
    assert doc.StudyInstanceUID == study_uid
    groups = doc.content.get_planar_roi_measurement_groups()
    seen = {}
    for g in groups:
        ref = g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        (m,) = g.get_measurements(name=sr.PROBABILITY_OF_CANCER)
        seen[ref] = (float(m.value), g.finding_type.meaning)
    classified = {uid: p for uid, p in preds.items() if p.predicted_class is not None}
    assert set(seen) == set(classified)
    for uid, p in classified.items():
        prob = p.probabilities["malignant"]
        assert seen[uid][0] == pytest.approx(100 * prob, abs=1e-3)
        expected = "Malignant" if prob >= p.extra["operating_point"] else "Benign"
        assert seen[uid][1] == expected
    return {"study_uid": study_uid, "orthanc_id": inst["ID"]}


def test_job_classifies_writes_sr_and_delivers(
    tmp_path: Path, database_url: str, tiny_model: Path
) -> None:
    with orthanc_server(tmp_path / "orthanc") as orthanc:
        settings = make_settings(tmp_path, database_url, tiny_model, [orthanc.node])
        job_id = ingest_study(settings, n=4)
        result = run_job(settings, job_id)
        assert result is not None and result.report_id is not None
        assert len(result.delivery_ids) == 1

        sessions = sessions_for(settings)
        with sessions() as session:
            job = session.get(Job, job_id)
            assert job.state == JobState.done and job.error is None and job.attempts == 1
            preds = session.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
            assert len(preds) == 4
            for p in preds:
                assert set(p.probabilities) == {"benign", "malignant"}
                assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
                assert set(p.log_likelihoods) == {"benign", "malignant"}
                assert p.bits_per_dim is not None and p.model_name == "sgc-tiny-test"
                assert len(p.model_sha256) == 64 and p.extra["laterality"] in ("L", "R")
                r0, c0, r1, c1 = p.extra["bbox"]
                assert 0 <= r0 < r1 <= 256 and 0 <= c0 < c1 <= 192
            report = session.get(Report, result.report_id)
            assert (settings.resolved_storage_dir / report.path).exists()

        deliver_until_settled(settings, result.report_id)
        with sessions() as session:
            (delivery,) = session.scalars(select(Delivery)).all()
            assert delivery.state == DeliveryState.sent and delivery.last_status == 0
        check_sr_in_orthanc(orthanc, settings, job_id)


def test_rerun_replaces_and_duplicate_is_a_no_op(
    tmp_path: Path, database_url: str, tiny_model: Path
) -> None:
    settings = make_settings(tmp_path, database_url, tiny_model, [])
    sessions = sessions_for(settings)
    job_id = ingest_study(settings, n=2)
    first = run_job(settings, job_id)
    assert first is not None and first.delivery_ids == []
    # A duplicate message for a done job: nothing to claim.
    assert lease.claim(sessions, job_id, 2.0) is None
    # A crash after the SR was written but before the commit looks like this on re-run:
    with sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(state=JobState.pending))
    second = run_job(settings, job_id)
    assert second is not None and second.report_id == first.report_id
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 1
        assert session.scalar(select(func.count()).select_from(Prediction)) == 2


def test_claim_is_exclusive_until_the_heartbeat_stops(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, Path("unused"), [])
    sessions = sessions_for(settings)
    job_id = ingest_study(settings, n=1)
    token = lease.claim(sessions, job_id, lease=1.0)
    assert token == 1
    with lease.Heartbeat(sessions, job_id, token, lease=1.0):
        time.sleep(1.5)
        assert lease.claim(sessions, job_id, lease=1.0) is None  # alive: not stolen
    time.sleep(1.2)  # heartbeat stopped (the worker "died"): the claim goes stale
    stolen = lease.claim(sessions, job_id, lease=1.0)
    assert stolen == 2
    # The old claimant's result is fenced off.
    assert not lease.fail(sessions, job_id, token, "late result of a dead worker")
    assert lease.job_state(sessions, job_id) == JobState.running


def test_study_without_classifiable_image_fails_once_with_reason(
    tmp_path: Path, database_url: str, tiny_model: Path
) -> None:
    settings = make_settings(tmp_path, database_url, tiny_model, [])
    no_pixels = tmp_path / "nopix.dcm"
    ds = pydicom.dcmread(write_mg(tmp_path / "src.dcm", MGSpec()))
    del ds.PixelData
    ds.save_as(no_pixels)
    job_id = ingest_study(settings, n=0, extra_files=[no_pixels])
    result = run_job(settings, job_id)
    assert result is not None and result.report_id is None
    sessions = sessions_for(settings)
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.failed
        assert "no classifiable image" in job.error and "pixel data" in job.error
        (pred,) = session.scalars(select(Prediction)).all()
        assert pred.predicted_class is None and "pixel data" in pred.extra["error"]
    assert lease.claim(sessions, job_id, 2.0) is None  # terminal: never looped


def test_partially_classifiable_study_is_reported_partial(tmp_path: Path, tiny_model: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", tiny_model, [])
    from db.session import upgrade

    upgrade(settings.resolved_database_url)
    no_pixels = tmp_path / "nopix.dcm"
    ds = pydicom.dcmread(write_mg(tmp_path / "src.dcm", MGSpec(laterality="R")))
    del ds.PixelData
    ds.save_as(no_pixels)
    job_id = ingest_study(settings, n=2, extra_files=[no_pixels])
    result = run_job(settings, job_id)
    assert result is not None and result.report_id is not None
    with sessions_for(settings)() as session:
        report = session.get(Report, result.report_id)
        job = session.get(Job, job_id)
        assert job.state == JobState.done and "1 image(s) could not be classified" in job.error
    doc = pydicom.dcmread(settings.resolved_storage_dir / report.path)
    assert doc.CompletionFlag == "PARTIAL"


def test_flat_image_is_flagged_with_its_reason(tmp_path: Path, tiny_model: Path) -> None:
    """A blank MG frame (a detector test shot sent by mistake) is classified but flagged
    out of distribution by the input checks, with the reason on record and in the SR."""
    import numpy as np

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", tiny_model, [])
    from db.session import upgrade

    upgrade(settings.resolved_database_url)
    flat = tmp_path / "flat.dcm"
    ds = pydicom.dcmread(write_mg(tmp_path / "src.dcm", MGSpec(laterality="R")))
    ds.PixelData = np.full((ds.Rows, ds.Columns), 1500, np.uint16).tobytes()
    ds.save_as(flat)
    job_id = ingest_study(settings, n=2, extra_files=[flat])
    result = run_job(settings, job_id)
    assert result is not None and result.report_id is not None
    with sessions_for(settings)() as session:
        preds = session.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        by_uid = {session.get(Instance, p.instance_id).sop_instance_uid: p for p in preds}
        flagged = by_uid[ds.SOPInstanceUID]
        assert flagged.ood and "no tissue structure" in flagged.extra["ood_reason"]
        assert flagged.predicted_class in ("benign", "malignant")
        report = session.get(Report, result.report_id)
    doc = pydicom.dcmread(settings.resolved_storage_dir / report.path)
    assert doc.CompletionFlag == "COMPLETE"
    text = str(doc)
    assert "Input outside model training distribution" in text


def test_archive_down_then_up_and_refusing_then_accepting(
    tmp_path: Path, database_url: str, tiny_model: Path
) -> None:
    flag = tmp_path / "refuse"
    with orthanc_server(tmp_path / "orthanc", refuse_flag=flag) as orthanc:
        settings = make_settings(tmp_path, database_url, tiny_model, [orthanc.node])
        sessions = sessions_for(settings)

        # 1. Archive down: the attempt is recorded, the delivery stays pending.
        orthanc.stop()
        job_id = ingest_study(settings, n=2)
        result = run_job(settings, job_id)
        assert result is not None and result.report_id is not None
        assert deliver_pending(sessions, settings, result.report_id) is not None
        with sessions() as session:
            (d,) = session.scalars(select(Delivery)).all()
            assert d.state == DeliveryState.pending and d.attempts == 1
            assert d.last_status is None and "ORTHANC" in d.last_error
            assert d.next_attempt_at is not None
        orthanc.start()
        deliver_until_settled(settings, result.report_id)
        with sessions() as session:
            (d,) = session.scalars(select(Delivery)).all()
            assert d.state == DeliveryState.sent and d.attempts >= 2 and d.last_status == 0
        check_sr_in_orthanc(orthanc, settings, job_id)

        # 2. Archive answers a failure status: recorded with its code, retried, then stored.
        flag.touch()
        job2 = ingest_study(settings, n=1)
        result2 = run_job(settings, job2)
        assert deliver_pending(sessions, settings, result2.report_id) is not None
        with sessions() as session:
            d2 = session.scalars(
                select(Delivery).where(Delivery.report_id == result2.report_id)
            ).one()
            assert d2.state == DeliveryState.pending and d2.last_status == 0xA700
            assert "0xA700" in d2.last_error
        time.sleep(0.3)
        deliver_pending(sessions, settings, result2.report_id)  # still refused: attempt 2
        flag.unlink()
        deliver_until_settled(settings, result2.report_id)
        with sessions() as session:
            d2 = session.get(Delivery, d2.id)
            assert d2.state == DeliveryState.sent and d2.attempts >= 3 and d2.last_status == 0
        check_sr_in_orthanc(orthanc, settings, job2)


def test_undeliverable_report_fails_after_the_give_up_time(
    tmp_path: Path, tiny_model: Path
) -> None:
    from db.session import upgrade
    from tests.conftest import free_port

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    settings = make_settings(tmp_path, url, tiny_model, [f"NOBODY@127.0.0.1:{free_port()}"])
    settings = settings.model_copy(update={"delivery_give_up": 0.5})
    job_id = ingest_study(settings, n=1)
    result = run_job(settings, job_id)
    deliver_until_settled(settings, result.report_id, deadline=30)
    with sessions_for(settings)() as session:
        (d,) = session.scalars(select(Delivery)).all()
        assert d.state == DeliveryState.failed and "NOBODY" in d.last_error
