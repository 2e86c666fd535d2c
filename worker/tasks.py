"""The two Celery tasks, by the fixed names the SCP sends: thin shells over the job logic.

``sgc.classify_study(job_id)`` on queue ``classify`` and ``sgc.deliver_report(report_id)`` on
queue ``deliver``. Both are idempotent: a duplicate or late message finds its row done (or
claimed by a live worker) and does nothing harmful. Retry timing is bounded by half the broker
lease so that no countdown outlives Redis' visibility timeout (which would duplicate it).
"""

from __future__ import annotations

import logging

from celery import Task, shared_task

from sgc_config.names import CLASSIFY_TASK, DELIVER_QUEUE, DELIVER_TASK
from worker.celery_app import settings_of

log = logging.getLogger(__name__)

#: Retries of a job after transient errors (storage unavailable, database busy, CUDA OOM).
CLASSIFY_MAX_RETRIES = 5
CLASSIFY_RETRY_BASE = 5.0


def _hop(settings) -> float:
    """Longest single countdown: shorter than the lease (Redis visibility timeout)."""
    from worker.lease import lease_seconds

    return max(1.0, lease_seconds(settings) / 2.0)


# max_retries=None on the task: Celery reads retry(max_retries=None) as "the task's default"
# (3), which ended the hops below after three; the limits that matter are passed explicitly.
@shared_task(
    bind=True, name=CLASSIFY_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=None
)
def classify_study(self: Task, job_id: int) -> None:
    """Classify one study revision (a Job row) and queue delivery of its SR."""
    from db.models import JobState
    from worker import classify
    from worker import lease as jobs
    from worker.runtime import ModelUnavailable, classifier_for, sessions_for

    settings = settings_of(self.app)
    sessions = sessions_for(settings)
    lease = jobs.lease_seconds(settings)
    state = jobs.job_state(sessions, job_id)
    if state is None:
        log.warning("job %s does not exist; message dropped", job_id)
        return
    if state in (JobState.done, JobState.failed):
        log.info("job %s is already %s; duplicate message ignored", job_id, state.value)
        return
    attempt = self.request.retries
    try:
        classifier = classifier_for(settings)
    except ModelUnavailable as exc:
        if attempt >= CLASSIFY_MAX_RETRIES:
            jobs.fail(sessions, job_id, None, str(exc))
            return
        raise self.retry(
            exc=exc, countdown=_retry_wait(attempt, settings), max_retries=CLASSIFY_MAX_RETRIES
        ) from None
    token = jobs.claim(sessions, job_id, lease, settings.max_attempts)
    if token is None:
        if jobs.job_state(sessions, job_id) == JobState.running:
            # Another worker holds a live claim: look again after a lease, so the job is not
            # forgotten should that worker die.
            raise self.retry(countdown=_hop(settings), max_retries=None)
        return
    try:
        with jobs.Heartbeat(sessions, job_id, token, lease):
            result = classify.run(sessions, settings, classifier, job_id, token)
    except classify.PermanentJobError as exc:
        log.error("job %s failed: %s", job_id, exc)
        jobs.fail(sessions, job_id, token, str(exc))
        return
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if attempt >= CLASSIFY_MAX_RETRIES:
            log.error("job %s failed after %d attempts: %s", job_id, attempt + 1, error)
            jobs.fail(sessions, job_id, token, f"gave up after {attempt + 1} attempts: {error}")
            return
        log.warning("job %s attempt %d failed, retrying: %s", job_id, attempt + 1, error)
        jobs.release_for_retry(
            sessions, job_id, token, f"attempt {attempt + 1} failed, will retry: {error}"
        )
        raise self.retry(
            exc=exc, countdown=_retry_wait(attempt, settings), max_retries=CLASSIFY_MAX_RETRIES
        ) from None
    if result is not None and result.delivery_ids:
        for report_id in result.report_ids:  # one deliver task per report object
            try:
                self.app.send_task(DELIVER_TASK, args=[report_id], queue=DELIVER_QUEUE)
            except Exception:  # the Delivery rows are pending: the sweeper re-sends them
                log.exception("could not queue delivery of report %s", report_id)


def _retry_wait(attempt: int, settings) -> float:
    return min(CLASSIFY_RETRY_BASE * 2.0**attempt, _hop(settings))


@shared_task(
    bind=True, name=DELIVER_TASK, acks_late=True, reject_on_worker_lost=True, max_retries=None
)
def deliver_report(self: Task, report_id: int) -> None:
    """Store one report in every archive it is pending for; come back when one is due again.

    The wait between attempts (exponential, for hours) lives in ``Delivery.next_attempt_at``;
    this task re-queues itself in hops no longer than half a lease until nothing is pending.
    """
    from worker.deliver import deliver_pending
    from worker.runtime import sessions_for

    settings = settings_of(self.app)
    try:
        next_due = deliver_pending(sessions_for(settings), settings, report_id)
    except LookupError as exc:
        log.warning("%s; message dropped", exc)
        return
    if next_due is not None:
        raise self.retry(countdown=max(1.0, min(next_due, _hop(settings))), max_retries=None)
