"""The SCP's periodic loop: settle studies, take back stranded jobs, send what the outbox holds.

Why a sweeper: the database is the outbox. A job is committed before its message is sent,
so a broker that is down, a message that is lost, or a crash between commit and send only
delays the work: the next pass finds the row still pending and not (recently) dispatched
and sends it again. Workers treat a repeated message for a finished row as a no-op.

A job left ``running`` by a worker that died is stranded unless the broker delivers its
message again, which kombu's stock filesystem transport never did (it deleted a message when it
was fetched) and no broker can promise for a message it lost. Once its
heartbeat is a lease old (SGC_RESEND_AFTER, the worker's lease) the sweeper puts it back to
pending and sends it at once, counting the loss; at SGC_MAX_ATTEMPTS losses it fails the job
with the reason instead (a study that kills every worker must not kill them for ever).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Delivery, DeliveryState, Job, JobState, lost_worker_reason, utcnow
from scp import metrics
from scp.dispatch import Dispatcher
from scp.settle import settle_studies

log = logging.getLogger(__name__)

_BATCH = 200


def _mark_job_sent(session_factory: sessionmaker[Session], job_id: int) -> None:
    with session_factory.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(dispatched_at=utcnow(), dispatch_count=Job.dispatch_count + 1)
        )


#: The longest wait between two sends of one pending job, in multiples of ``resend_after``.
MAX_RESEND_BACKOFF = 8


def resend_due(now: datetime, resend_after: float) -> ColumnElement[bool]:
    """A pending job is due when never sent, or when its last send is older than
    ``resend_after`` x 2^(sends - 1), at most x :data:`MAX_RESEND_BACKOFF`.

    Why back off: a job that waits behind a long backlog (a PACS burst, one busy GPU) is still
    pending but its message is in the queue; a fixed period re-sent it every ``resend_after``,
    so the queue filled with copies that each cost a claim. A lost message is still re-sent:
    after 1, 2, 4, then every 8 periods.
    """
    clauses = [Job.dispatched_at.is_(None)]
    sends, factor = 1, 1
    while factor < MAX_RESEND_BACKOFF:
        count = Job.dispatch_count <= sends if sends == 1 else Job.dispatch_count == sends
        clauses.append(
            and_(count, Job.dispatched_at <= now - timedelta(seconds=resend_after * factor))
        )
        sends, factor = sends + 1, factor * 2
    last = now - timedelta(seconds=resend_after * MAX_RESEND_BACKOFF)
    clauses.append(and_(Job.dispatch_count >= sends, Job.dispatched_at <= last))
    return or_(*clauses)


def send_pending_jobs(
    session_factory: sessionmaker[Session],
    dispatcher: Dispatcher,
    resend_after: float,
    now: datetime | None = None,
) -> int:
    """Send pending jobs never dispatched, or due again (:func:`resend_due`)."""
    with session_factory() as session:
        job_ids = session.scalars(
            select(Job.id)
            .where(Job.state == JobState.pending, resend_due(now or utcnow(), resend_after))
            .order_by(Job.id)
            .limit(_BATCH)
        ).all()
    sent = 0
    for job_id in job_ids:
        try:
            dispatcher.classify(job_id)
        except Exception as exc:  # kombu/redis raise many types; the row stays pending
            log.warning(
                "broker unavailable (%s); %d job(s) stay pending",
                type(exc).__name__,
                len(job_ids) - sent,
            )
            break
        _mark_job_sent(session_factory, job_id)
        sent += 1
    return sent


def take_back_stranded(
    session_factory: sessionmaker[Session],
    lease: float,
    max_attempts: int,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Running jobs with a heartbeat older than ``lease``: back to pending (unsent, so the
    next send goes out at once) or, at ``max_attempts`` lost, failed. Returns (resent, failed).

    Each change is fenced on the attempt seen, so a job a worker claims meanwhile is left alone;
    a late worker that took it before finds the state changed and drops its result.
    """
    now = now or utcnow()
    stale = now - timedelta(seconds=lease)
    with session_factory() as session:
        rows = session.execute(
            select(Job.id, Job.attempts, Job.lost_attempts)
            .where(Job.state == JobState.running, Job.updated_at < stale)
            .order_by(Job.id)
            .limit(_BATCH)
        ).all()
    counts = {"resent": 0, "failed": 0}
    for job_id, attempts, lost in rows:
        lost += 1
        values: dict = {"lost_attempts": lost, "updated_at": now}
        if lost >= max_attempts:
            outcome = "failed"
            values.update(state=JobState.failed, error=lost_worker_reason(lost), finished_at=now)
        else:
            outcome = "resent"
            values.update(
                state=JobState.pending,
                dispatched_at=None,
                error=f"worker lost during attempt {attempts} ({lost} of {max_attempts}); sent again",
            )
        with session_factory.begin() as session:
            changed = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.state == JobState.running,
                    Job.attempts == attempts,
                    Job.updated_at < stale,
                )
                .values(**values)
            ).rowcount
        if changed:
            log.warning("job %d: %s", job_id, values["error"])
            metrics.JOBS_TAKEN_BACK.labels(outcome).inc()
            counts[outcome] += 1
    return counts["resent"], counts["failed"]


def send_pending_deliveries(
    session_factory: sessionmaker[Session],
    dispatcher: Dispatcher,
    resend_after: float,
    now: datetime | None = None,
) -> int:
    """Re-send deliveries still pending ``resend_after`` s past their last hand-over.

    The deliver worker sends the first message and schedules its own retries
    (``next_attempt_at``); the sweeper only steps in when both are long overdue, which
    means the message was lost.
    """
    now = now or utcnow()
    stale = now - timedelta(seconds=resend_after)
    with session_factory() as session:
        rows = session.execute(
            select(Delivery.id, Delivery.report_id)
            .where(
                Delivery.state == DeliveryState.pending,
                or_(Delivery.dispatched_at.is_(None), Delivery.dispatched_at <= stale),
                Delivery.created_at <= stale,
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= stale),
            )
            .order_by(Delivery.id)
            .limit(_BATCH)
        ).all()
    # The deliver task takes a report and serves all of its pending destinations.
    by_report: dict[int, list[int]] = {}
    for delivery_id, report_id in rows:
        by_report.setdefault(report_id, []).append(delivery_id)
    sent = 0
    for report_id, delivery_ids in by_report.items():
        try:
            dispatcher.deliver(report_id)
        except Exception as exc:
            log.warning("broker unavailable (%s); deliveries stay pending", type(exc).__name__)
            break
        with session_factory.begin() as session:
            session.execute(
                update(Delivery).where(Delivery.id.in_(delivery_ids)).values(dispatched_at=utcnow())
            )
        sent += len(delivery_ids)
    return sent


class Sweeper(threading.Thread):
    """Runs :meth:`run_once` every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        dispatcher: Dispatcher,
        stable_age: float,
        interval: float,
        resend_after: float,
        max_attempts: int,
    ) -> None:
        super().__init__(name="sgc-sweeper", daemon=True)
        self.session_factory = session_factory
        self.dispatcher = dispatcher
        self.stable_age = stable_age
        self.interval = interval
        self.resend_after = resend_after
        self.max_attempts = max_attempts
        self._stop_event = threading.Event()

    def run_once(self) -> tuple[int, int, int]:
        """One pass: (jobs created, jobs sent, deliveries sent)."""
        created = settle_studies(self.session_factory, self.stable_age)
        # The lease is the workers' (worker/lease.py: SGC_RESEND_AFTER).
        take_back_stranded(self.session_factory, self.resend_after, self.max_attempts)
        jobs = send_pending_jobs(self.session_factory, self.dispatcher, self.resend_after)
        deliveries = send_pending_deliveries(
            self.session_factory, self.dispatcher, self.resend_after
        )
        return len(created), jobs, deliveries

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.run_once()
            except SQLAlchemyError as exc:  # database down: try again next pass
                log.warning("sweeper pass skipped, database unavailable: %s", type(exc).__name__)
            except Exception:
                log.exception("sweeper pass failed")
            self._stop_event.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
