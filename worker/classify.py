"""One classification job: claim it, classify the study's views in one batch, write the reports.

Why the claim and the fence: the broker may deliver a job's message twice (the SCP's sweeper
re-sends jobs left pending, Redis re-delivers a message whose worker died) and a worker may be
killed at any point. A job is claimed by one conditional UPDATE (pending, or running with a
heartbeat older than the lease); the claim bumps ``attempts``, which then fences the final
commit: only the claimant whose token still matches may store predictions and mark the job
done, in one transaction. The reports' UIDs are deterministic, so a rerun rewrites the same
objects and finds their rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Instance, Job, JobState, Prediction, Report, Study
from sgc_config.settings import Settings
from worker import metrics, pipeline
from worker import reports as srmod
from worker.deliver import create_deliveries
from worker.reports.formats import ReportObject

if TYPE_CHECKING:
    from sgc_core.view_model import ViewModel

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"


class PermanentJobError(Exception):
    """A job that can never succeed as it stands (no classifiable image, unusable model):
    record it as failed with this message instead of retrying."""


@dataclass(frozen=True)
class JobResult:
    """What a finished job produced: its report (None if it failed) and deliveries queued."""

    job_id: int
    report_id: int | None  # the first object's (the TID 1500 SR when it is written)
    delivery_ids: list[int]
    report_ids: list[int] = field(default_factory=list)  # every object's, in build order


def run(
    sessions: sessionmaker[Session],
    settings: Settings,
    model: ViewModel,
    job_id: int,
    token: int,
) -> JobResult | None:
    """Classify the job's study and record predictions, the report objects and deliveries.

    Returns None when the claim was lost (another worker took the job over). Raises
    ``PermanentJobError`` for a study that cannot be classified; any other exception is
    treated as transient by the caller. Every report object is written (atomically) before
    the one transaction that records them all, so no delivery ever sees a partial set.
    """
    study_uid, revision, instances = _load_job(sessions, job_id)
    started = time.perf_counter()
    storage = settings.resolved_storage_dir
    views = pipeline.classify_paths(model, [storage / inst.path for inst in instances])
    algorithm = pipeline.algorithm(model)
    predictions = [
        _prediction(job_id, inst, v, algorithm) for inst, v in zip(instances, views, strict=True)
    ]
    objects = pipeline.build_reports(model, views, revision, settings.report_formats)
    paths = [_write(storage, study_uid, obj) for obj in objects]

    with sessions() as session:
        if not _fence(session, job_id, token):
            return None
        session.execute(delete(Prediction).where(Prediction.job_id == job_id))
        session.add_all(predictions)
        if not objects:
            _finish(session, job_id, JobState.failed, _no_view_error(instances, views))
            session.commit()
            metrics.IMAGES.labels("unclassifiable").inc(len(views))
            return JobResult(job_id, None, [])
        rows = [_report_row(session, job_id, o, p) for o, p in zip(objects, paths, strict=True)]
        deliveries = [d for row in rows for d in create_deliveries(session, row, settings)]
        skipped = sum(v.result is None for v in views)
        _finish(
            session,
            job_id,
            JobState.done,
            f"{skipped} image(s) could not be classified" if skipped else None,
        )
        session.flush()
        result = JobResult(job_id, rows[0].id, [d.id for d in deliveries], [r.id for r in rows])
        session.commit()
    _count(views, time.perf_counter() - started)
    log.info(
        "job %d: study %s rev %d classified (%d view(s)), %d report object(s): %s",
        job_id,
        study_uid,
        revision,
        sum(v.result is not None for v in views),
        len(objects),
        ", ".join(o.form for o in objects),
    )
    return result


def _load_job(sessions: sessionmaker[Session], job_id: int) -> tuple[str, int, list[Instance]]:
    """The job's study UID, revision and classifiable instances (detached)."""
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise PermanentJobError(f"job {job_id} does not exist")
        study: Study = job.study
        instances = list(
            session.scalars(
                select(Instance)
                .where(Instance.study_id == study.id, Instance.classifiable.is_(True))
                .order_by(Instance.id)
            )
        )
        for inst in instances:
            session.expunge(inst)
        study_uid, revision = study.study_uid, job.revision
    if not instances:
        raise PermanentJobError(f"study {study_uid} has no classifiable image")
    return study_uid, revision, instances


def _write(storage: Path, study_uid: str, obj: ReportObject) -> Path:
    """Write one report object as reports/<study>/<SOP UID>.<form suffix>.dcm (the suffix
    tells `sgc status` the form); return its path relative to the storage root."""
    rel = Path(REPORTS_DIR) / study_uid / f"{obj.sop_instance_uid}.{obj.suffix}.dcm"
    srmod.write_report(obj.dataset, storage / rel)
    return rel


def _fence(session: Session, job_id: int, token: int) -> bool:
    """Whether this claimant still owns the job. The fence is a write: it takes the row lock
    (PostgreSQL) or the database write lock (SQLite) before anything else, so no claim can
    slip in before this transaction commits."""
    owned = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempts == token, Job.state == JobState.running)
        .values(updated_at=datetime.now(UTC))
    ).rowcount
    if not owned:
        session.rollback()
        log.warning("job %d was taken over by another worker; dropping this result", job_id)
    return bool(owned)


def _finish(session: Session, job_id: int, state: JobState, error: str | None) -> None:
    now = datetime.now(UTC)
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(state=state, error=error, finished_at=now, updated_at=now)
    )


def _report_row(session: Session, job_id: int, obj: ReportObject, rel: Path) -> Report:
    """The Report row of one object; the same UID on a re-run finds the existing row."""
    row = session.scalar(select(Report).where(Report.sop_instance_uid == obj.sop_instance_uid))
    if row is None:
        row = Report(
            job_id=job_id,
            sop_instance_uid=obj.sop_instance_uid,
            series_uid=obj.series_instance_uid,
            path=str(rel),
        )
        session.add(row)
        session.flush()
    return row


def _no_view_error(instances: list[Instance], views: list[pipeline.ViewOutcome]) -> str:
    reasons = "; ".join(
        f"{inst.sop_instance_uid}: {v.error or 'no breast found'}"
        for inst, v in zip(instances, views, strict=True)
    )
    return f"no classifiable image in the study ({reasons})"[:4000]


def _count(views: list[pipeline.ViewOutcome], seconds: float) -> None:
    metrics.CLASSIFY_SECONDS.observe(seconds)
    ok = [v for v in views if v.result is not None]
    n_ood = sum(1 for v in ok if v.result.ood)
    metrics.IMAGES.labels("classified").inc(len(ok) - n_ood)
    metrics.IMAGES.labels("ood").inc(n_ood)
    metrics.IMAGES.labels("unclassifiable").inc(len(views) - len(ok))


def _prediction(
    job_id: int, instance: Instance, view: pipeline.ViewOutcome, algorithm: srmod.Algorithm
) -> Prediction:
    """The database row of one view: the typed result's JSON form in ``extra``."""
    r = view.result
    extra: dict[str, Any] = {"laterality": view.laterality or None, "view": view.view or None}
    common = {
        "job_id": job_id,
        "instance_id": instance.id,
        "model_name": algorithm.name,
        "model_version": algorithm.version,
        "model_sha256": algorithm.sha256,
    }
    if r is None:
        extra["error"] = view.error
        return Prediction(
            predicted_class=None, probabilities={}, log_likelihoods={}, extra=extra, **common
        )
    extra.update(r.to_dict())
    extra.update(
        bbox=list(r.breast_box),
        positive_class="malignant",
        operating_point=algorithm.operating_point,
        finding=_finding_word(r, algorithm),
    )
    probabilities = dict(r.extra.get("probabilities") or {})
    if r.p_malignant is not None:
        probabilities.setdefault("malignant", r.p_malignant)
    return Prediction(
        predicted_class=r.predicted_class,
        probabilities=probabilities,
        log_likelihoods={k: _finite(v) for k, v in (r.extra.get("log_likelihoods") or {}).items()},
        bits_per_dim=_finite(r.extra.get("bits_per_dim")),
        ood=bool(r.ood),
        ood_score=_finite(r.ood_score),
        extra=extra,
        **common,
    )


def _finding_word(r, algorithm: srmod.Algorithm) -> str | None:
    if r.p_malignant is None:
        return None
    return "malignant" if r.p_malignant >= algorithm.operating_point else "benign"


def _finite(value: float) -> float | None:
    import math

    return float(value) if value is not None and math.isfinite(value) else None


__all__ = [
    "JobResult",
    "PermanentJobError",
    "run",
]
