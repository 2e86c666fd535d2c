"""A job's lease: the claim that makes one worker its owner, the heartbeat that keeps it, and
the fenced state changes that end it.

Why a lease and a fence: the broker may deliver a job's message twice (the SCP's sweeper
re-sends jobs left pending or stranded, Redis re-delivers a message whose worker died) and a
worker may be killed at any point. A job is claimed by one conditional UPDATE (pending, or
running with a heartbeat older than the lease); the claim bumps ``attempts``, which then fences
every later write: only the claimant whose token still matches may change the job's state.

A running job whose heartbeat stopped for a lease lost its worker. It is taken back either by
a worker's claim (a redelivered or repeated message) or by the SCP's sweeper, which does not
rely on any broker to redeliver (kombu's stock filesystem transport deleted a message when it
was fetched; any broker can lose one); both count the loss in ``lost_attempts`` and fail the
job at SGC_MAX_ATTEMPTS.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Job, JobState, lost_worker_reason
from sgc_config.settings import Settings

log = logging.getLogger(__name__)


def lease_seconds(settings: Settings) -> float:
    """How long a running job may go without a heartbeat before another worker may take it."""
    return max(1.0, float(settings.resend_after))


def claim(
    sessions: sessionmaker[Session], job_id: int, lease: float, max_attempts: int | None = None
) -> int | None:
    """Atomically take the job; return the fencing token (the new attempt count) or None when
    the job is done, failed, unknown, or running under a live heartbeat.

    Taking over a running job means its worker died: that counts in ``lost_attempts``, and
    at ``max_attempts`` lost the job is failed (a poison study) instead of run once more.
    """
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=lease)
    with sessions() as session:
        took = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                or_(
                    Job.state == JobState.pending,
                    and_(Job.state == JobState.running, Job.updated_at < stale),
                ),
            )
            .values(
                state=JobState.running,
                attempts=Job.attempts + 1,
                lost_attempts=Job.lost_attempts + case((Job.state == JobState.running, 1), else_=0),
                started_at=now,
                updated_at=now,
            )
        ).rowcount
        session.commit()
        if not took:
            return None
        token, lost = session.execute(
            select(Job.attempts, Job.lost_attempts).where(Job.id == job_id)
        ).one()
    if max_attempts is not None and lost >= max_attempts:
        log.error("job %d: %s", job_id, lost_worker_reason(lost))
        fail(sessions, job_id, token, lost_worker_reason(lost))
        return None
    return token


def job_state(sessions: sessionmaker[Session], job_id: int) -> JobState | None:
    with sessions() as session:
        return session.scalar(select(Job.state).where(Job.id == job_id))


class Heartbeat:
    """Refreshes the job's ``updated_at`` while it runs, so a long classification on a slow
    device keeps its claim and a killed worker's claim goes stale after one lease."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, token: int, lease: float):
        self._sessions, self._job_id, self._token = sessions, job_id, token
        self._interval = max(0.2, lease / 3.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-job-{job_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._sessions() as session:
                    session.execute(
                        update(Job)
                        .where(
                            Job.id == self._job_id,
                            Job.attempts == self._token,
                            Job.state == JobState.running,
                        )
                        .values(updated_at=datetime.now(UTC))
                    )
                    session.commit()
            except Exception:  # a missed beat only shortens the lease; never kill the job
                log.warning("heartbeat of job %d failed", self._job_id, exc_info=True)


def release_for_retry(sessions: sessionmaker[Session], job_id: int, token: int, error: str) -> bool:
    """Give a claimed job back (pending) after a transient error, keeping the error visible."""
    return _set_state(sessions, job_id, token, JobState.pending, error, finished=False)


def fail(sessions: sessionmaker[Session], job_id: int, token: int | None, error: str) -> bool:
    """Terminal failure with the reason recorded (shown by `sgc status`)."""
    return _set_state(sessions, job_id, token, JobState.failed, error, finished=True)


def _set_state(
    sessions: sessionmaker[Session],
    job_id: int,
    token: int | None,
    state: JobState,
    error: str,
    finished: bool,
) -> bool:
    """Change the job's state; with a token only while that claim still holds it (running
    with the same attempt): a job the sweeper took back is pending with the same attempt
    count, and a late worker must not end it."""
    now = datetime.now(UTC)
    if token is None:
        cond = [Job.id == job_id, Job.state.in_([JobState.pending, JobState.running])]
    else:
        cond = [Job.id == job_id, Job.state == JobState.running, Job.attempts == token]
    values: dict[str, Any] = {"state": state, "error": error[:4000], "updated_at": now}
    if finished:
        values["finished_at"] = now
    with sessions() as session:
        n = session.execute(update(Job).where(*cond).values(**values)).rowcount
        session.commit()
    return bool(n)


__all__ = [
    "Heartbeat",
    "claim",
    "fail",
    "job_state",
    "lease_seconds",
    "release_for_retry",
]
