"""Stranded jobs are taken back, poison studies fail with their reason (SQLite and PostgreSQL).

A worker killed mid-classification leaves its job ``running`` with a heartbeat that stops.
Once that heartbeat is a lease old, the SCP's sweeper puts the job back to pending and sends
it again, or a worker's claim takes it over; both count the lost worker in
``job.lost_attempts`` and at SGC_MAX_ATTEMPTS fail the job instead. The worker that lost its
claim must not write anything afterwards (the fence). The same scenarios with real killed
processes are in tests/test_reliability_worker_kill.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import func, select, update

from db.models import Job, JobState, Report, Study, lost_worker_reason, utcnow
from db.queries import counts
from scp.dispatch import Dispatcher, make_producer
from scp.sweeper import send_pending_jobs, take_back_stranded
from tests.helpers.scpnode import node_settings
from tests.test_worker_pipeline import ingest_study, make_settings
from worker import classify, lease
from worker.runtime import classifier_for, sessions_for

LEASE = 10.0


def _taken_back(outcome: str) -> float:
    """The SCP's counter of jobs taken back (sgc_jobs_taken_back_total) in this process."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("sgc_jobs_taken_back_total", {"outcome": outcome}) or 0.0


def _job(sessions, state: JobState, heartbeat_age: float, attempts: int = 1, lost: int = 0) -> int:
    with sessions.begin() as s:
        job = Job(
            study=Study(study_uid=generate_uid(), received_rev=1, jobbed_rev=1),
            revision=1,
            state=state,
            attempts=attempts,
            lost_attempts=lost,
            dispatched_at=utcnow() - timedelta(seconds=heartbeat_age),
            updated_at=utcnow() - timedelta(seconds=heartbeat_age),
        )
        s.add(job)
        s.flush()
        return job.id


def _get(sessions, job_id: int) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def _age_heartbeat(sessions, job_id: int, seconds: float = 2 * LEASE) -> None:
    """What a killed worker leaves: its heartbeat stops; here the clock is moved instead."""
    with sessions.begin() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(updated_at=utcnow() - timedelta(seconds=seconds))
        )


def test_sweeper_resends_a_stranded_job_and_leaves_live_ones(
    tmp_path: Path, database_url: str
) -> None:
    sessions = sessions_for(node_settings(tmp_path, database_url))
    stranded = _job(sessions, JobState.running, heartbeat_age=2 * LEASE)
    live = _job(sessions, JobState.running, heartbeat_age=1.0)
    waiting = _job(sessions, JobState.pending, heartbeat_age=1.0)
    before = _taken_back("resent")
    assert take_back_stranded(sessions, LEASE, max_attempts=3) == (1, 0)
    assert _taken_back("resent") == before + 1
    job = _get(sessions, stranded)
    assert job.state == JobState.pending and job.lost_attempts == 1 and job.attempts == 1
    assert job.dispatched_at is None  # sent on this very pass, not after SGC_RESEND_AFTER
    assert job.error == "worker lost during attempt 1 (1 of 3); sent again"
    assert _get(sessions, live).state == JobState.running
    assert _get(sessions, live).lost_attempts == 0
    dispatcher = Dispatcher(make_producer(node_settings(tmp_path, database_url)))
    try:
        assert send_pending_jobs(sessions, dispatcher, resend_after=LEASE) == 1
    finally:
        dispatcher.close()
    assert _get(sessions, stranded).dispatch_count == 1
    assert _get(sessions, waiting).dispatch_count == 0  # dispatched 1 s ago: not yet again
    assert take_back_stranded(sessions, LEASE, max_attempts=3) == (0, 0)  # nothing left


def test_poison_study_fails_with_its_reason_at_max_attempts(
    tmp_path: Path, database_url: str
) -> None:
    sessions = sessions_for(node_settings(tmp_path, database_url))
    poison = _job(sessions, JobState.running, heartbeat_age=2 * LEASE, attempts=3, lost=2)
    before = _taken_back("failed")
    assert take_back_stranded(sessions, LEASE, max_attempts=3) == (0, 1)
    assert _taken_back("failed") == before + 1
    job = _get(sessions, poison)
    assert job.state == JobState.failed and job.lost_attempts == 3
    assert job.error == lost_worker_reason(3)
    assert "worker died 3 times while classifying" in job.error
    assert job.finished_at is not None
    assert lease.claim(sessions, poison, LEASE, max_attempts=3) is None  # never run again
    with sessions() as s:
        assert counts(s)["workers_lost"] == {"attempts": 3, "poison_jobs": 1}


def test_claim_counts_a_dead_worker_and_fails_the_job_at_max_attempts(
    tmp_path: Path, database_url: str
) -> None:
    sessions = sessions_for(node_settings(tmp_path, database_url))
    job_id = _job(sessions, JobState.pending, heartbeat_age=0.0, attempts=0)
    assert lease.claim(sessions, job_id, LEASE, max_attempts=3) == 1
    assert _get(sessions, job_id).lost_attempts == 0  # a pending job lost nobody
    assert lease.claim(sessions, job_id, LEASE, max_attempts=3) is None  # live claim
    for token, lost in ((2, 1), (3, 2)):
        _age_heartbeat(sessions, job_id)
        assert lease.claim(sessions, job_id, LEASE, max_attempts=3) == token
        assert _get(sessions, job_id).lost_attempts == lost
    _age_heartbeat(sessions, job_id)
    assert lease.claim(sessions, job_id, LEASE, max_attempts=3) is None
    job = _get(sessions, job_id)
    assert job.state == JobState.failed and job.lost_attempts == 3
    assert job.error == lost_worker_reason(3)


def test_a_late_worker_cannot_write_after_its_job_was_taken_back(
    tmp_path: Path, database_url: str, tiny_model: Path
) -> None:
    settings = make_settings(tmp_path, database_url, tiny_model, [])
    sessions = sessions_for(settings)
    job_id = ingest_study(settings, n=2)
    late = lease.claim(sessions, job_id, LEASE, max_attempts=3)
    _age_heartbeat(sessions, job_id)  # the late worker stalled for two leases
    assert take_back_stranded(sessions, LEASE, max_attempts=3) == (1, 0)
    # Taken back and not yet claimed again: the late claim may neither end nor return it.
    assert not lease.fail(sessions, job_id, late, "late failure")
    assert not lease.release_for_retry(sessions, job_id, late, "late retry")
    assert classify.run(sessions, settings, classifier_for(settings), job_id, late) is None
    assert _get(sessions, job_id).state == JobState.pending
    token = lease.claim(sessions, job_id, LEASE, max_attempts=3)
    assert token == late + 1
    assert classify.run(sessions, settings, classifier_for(settings), job_id, late) is None
    result = classify.run(sessions, settings, classifier_for(settings), job_id, token)
    assert result is not None and result.report_id is not None
    job = _get(sessions, job_id)
    assert job.state == JobState.done and job.lost_attempts == 1 and job.attempts == 2
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == 1
    reports = settings.resolved_storage_dir / classify.REPORTS_DIR
    assert len(list(reports.rglob("*.dcm"))) == 1  # deterministic UIDs: one file, never a second
