"""Read-side helpers: the state of recent studies as plain dicts (for `sgc status`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from db.models import Delivery, DeliveryState, Job, JobState, Prediction, Report, Study


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def study_overview(session: Session, limit: int = 20, study_uid: str | None = None) -> list[dict]:
    """Recent studies, newest first, each with its instances, latest job, predictions, reports."""
    query = (
        select(Study)
        .options(
            selectinload(Study.instances),
            selectinload(Study.jobs)
            .selectinload(Job.predictions)
            .selectinload(Prediction.instance),
            selectinload(Study.jobs).selectinload(Job.reports).selectinload(Report.deliveries),
        )
        .order_by(Study.last_received_at.desc())
        .limit(limit)
    )
    if study_uid:
        query = query.where(Study.study_uid == study_uid)
    out = []
    for study in session.scalars(query):
        job = study.jobs[-1] if study.jobs else None
        out.append(
            {
                "study_uid": study.study_uid,
                "instances": len(study.instances),
                "classifiable": sum(1 for i in study.instances if i.classifiable),
                "last_received_at": _iso(study.last_received_at),
                "settled": study.jobbed_rev >= study.received_rev,
                "job": _job(job) if job else None,
            }
        )
    return out


def _job(job: Job) -> dict:
    return {
        "id": job.id,
        "revision": job.revision,
        "state": job.state.value,
        "attempts": job.attempts,
        "lost_attempts": job.lost_attempts,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        "predictions": [
            {
                "sop_instance_uid": p.instance.sop_instance_uid,
                "laterality": p.extra.get("laterality"),
                "view": p.extra.get("view"),
                "predicted_class": p.predicted_class,
                "probabilities": p.probabilities,
                "ood": p.ood,
                "ood_score": p.ood_score,
                "bits_per_dim": p.bits_per_dim,
                "model": f"{p.model_name} {p.model_version}",
                "error": p.extra.get("error"),
                "findings": p.extra.get("findings") or [],
            }
            for p in job.predictions
        ],
        "reports": [
            {
                "sop_instance_uid": r.sop_instance_uid,
                "series_uid": r.series_uid,
                "path": r.path,
                "deliveries": [
                    {
                        "destination": d.destination,
                        "state": d.state.value,
                        "attempts": d.attempts,
                        "last_status": d.last_status,
                        "last_error": d.last_error,
                    }
                    for d in r.deliveries
                ],
            }
            for r in job.reports
        ],
    }


def counts(session: Session) -> dict[str, dict[str, int]]:
    """Jobs and deliveries by state, and workers lost (for metrics and the status summary)."""
    jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    deliveries = dict(
        session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
    )
    lost, poison = session.execute(
        select(
            func.coalesce(func.sum(Job.lost_attempts), 0),
            func.count().filter(Job.state == JobState.failed, Job.lost_attempts > 0),
        )
    ).one()
    return {
        "jobs": {s.value: int(jobs.get(s, 0)) for s in JobState},
        "deliveries": {s.value: int(deliveries.get(s, 0)) for s in DeliveryState},
        # Workers lost while classifying (summed over jobs), and the failed jobs that lost
        # one: poison studies, failed at SGC_MAX_ATTEMPTS (their error says so).
        "workers_lost": {"attempts": int(lost), "poison_jobs": int(poison)},
    }
