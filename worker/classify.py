"""One classification job: claim it, classify the study's views in one batch, write the SR.

Why the claim and the fence: the broker may deliver a job's message twice (the SCP's sweeper
re-sends jobs left pending, Redis re-delivers a message whose worker died) and a worker may be
killed at any point. A job is claimed by one conditional UPDATE (pending, or running with a
heartbeat older than the lease); the claim bumps ``attempts``, which then fences the final
commit: only the claimant whose token still matches may store predictions and mark the job
done, in one transaction. The SR's UIDs are deterministic, so a rerun rewrites the same report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom import Dataset
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Instance, Job, JobState, Prediction, Report, Study
from sgc_node.settings import Settings
from worker import metrics
from worker import sr as srmod
from worker.deliver import create_deliveries

if TYPE_CHECKING:
    from sgc_core.inference import Classifier

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"


class PermanentJobError(Exception):
    """A job that can never succeed as it stands (no classifiable image, unusable model):
    record it as failed with this message instead of retrying."""


@dataclass(frozen=True)
class JobResult:
    """What a finished job produced: its report (None if it failed) and deliveries queued."""

    job_id: int
    report_id: int | None
    delivery_ids: list[int]


@dataclass
class _View:
    instance: Instance
    meta: Dataset
    tensor: Any = None
    bbox: tuple[int, int, int, int] | None = None
    laterality: str = ""
    view: str = ""
    error: str | None = None
    ood_reasons: tuple[str, ...] = ()


def run(
    sessions: sessionmaker[Session],
    settings: Settings,
    classifier: Classifier,
    job_id: int,
    token: int,
) -> JobResult | None:
    """Classify the job's study and record predictions, the SR and its deliveries.

    Returns None when the claim was lost (another worker took the job over). Raises
    ``PermanentJobError`` for a study that cannot be classified; any other exception is
    treated as transient by the caller.
    """
    storage = settings.resolved_storage_dir
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise PermanentJobError(f"job {job_id} does not exist")
        study: Study = job.study
        study_uid, revision = study.study_uid, job.revision
        instances = list(
            session.scalars(
                select(Instance)
                .where(Instance.study_id == study.id, Instance.classifiable.is_(True))
                .order_by(Instance.id)
            )
        )
        for inst in instances:
            session.expunge(inst)
    if not instances:
        raise PermanentJobError(f"study {study_uid} has no classifiable image")

    card = classifier.card
    config = _preprocess_config(card)
    started = time.perf_counter()
    views = [_prepare(inst, storage / inst.path, config) for inst in instances]
    ok = [v for v in views if v.error is None]
    results = []
    if ok:
        import torch

        batch = torch.stack([v.tensor for v in ok])
        results = classifier.classify(batch, [v.ood_reasons for v in ok])
        if len(results) != len(ok):
            raise RuntimeError(f"classifier returned {len(results)} results for {len(ok)} images")

    algorithm = _algorithm(card)
    predictions = [
        _prediction(job_id, v, r, card, algorithm) for v, r in zip(ok, results, strict=True)
    ] + [_prediction(job_id, v, None, card, algorithm) for v in views if v.error is not None]

    sr_path: Path | None = None
    uids = srmod.ReportUids.for_job(study_uid, algorithm.sha256, revision)
    if ok:
        report = srmod.build_report(
            [v.meta for v in views if v.meta is not None],
            [
                srmod.ViewResult(
                    sop_instance_uid=v.instance.sop_instance_uid,
                    laterality=v.laterality,
                    view=v.view,
                    probability=float(r.probabilities[algorithm.positive_class]),
                    bbox=v.bbox,  # type: ignore[arg-type]
                    ood=bool(r.ood),
                )
                for v, r in zip(ok, results, strict=True)
            ],
            algorithm,
            revision,
            complete=len(ok) == len(views),
        )
        rel = Path(REPORTS_DIR) / study_uid / f"{uids.sop_instance_uid}.dcm"
        sr_path = storage / rel
        srmod.write_report(report, sr_path)

    with sessions() as session:
        # The fence is a write: it takes the row lock (PostgreSQL) or the database write lock
        # (SQLite) before anything else, so no claim can slip in before this commit.
        owned = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempts == token, Job.state == JobState.running)
            .values(updated_at=datetime.now(UTC))
        ).rowcount
        if not owned:
            session.rollback()
            log.warning("job %d was taken over by another worker; dropping this result", job_id)
            return None
        session.execute(delete(Prediction).where(Prediction.job_id == job_id))
        session.add_all(predictions)
        now = datetime.now(UTC)
        if not ok:
            reasons = "; ".join(f"{v.instance.sop_instance_uid}: {v.error}" for v in views)
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    state=JobState.failed,
                    error=f"no classifiable image in the study ({reasons})"[:4000],
                    finished_at=now,
                    updated_at=now,
                )
            )
            session.commit()
            metrics.IMAGES.labels("unclassifiable").inc(len(views))
            return JobResult(job_id, None, [])
        report_row = session.scalar(
            select(Report).where(Report.sop_instance_uid == uids.sop_instance_uid)
        )
        if report_row is None:
            report_row = Report(
                job_id=job_id,
                sop_instance_uid=uids.sop_instance_uid,
                series_uid=uids.series_instance_uid,
                path=str(rel),
            )
            session.add(report_row)
            session.flush()
        deliveries = create_deliveries(session, report_row, settings)
        skipped = len(views) - len(ok)
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state=JobState.done,
                error=(f"{skipped} image(s) could not be classified" if skipped else None),
                finished_at=now,
                updated_at=now,
            )
        )
        session.flush()
        result = JobResult(job_id, report_row.id, [d.id for d in deliveries])
        session.commit()
    metrics.CLASSIFY_SECONDS.observe(time.perf_counter() - started)
    n_ood = sum(1 for r in results if r.ood)
    metrics.IMAGES.labels("classified").inc(len(ok) - n_ood)
    metrics.IMAGES.labels("ood").inc(n_ood)
    metrics.IMAGES.labels("unclassifiable").inc(len(views) - len(ok))
    log.info(
        "job %d: study %s rev %d classified (%d view(s)), report %s",
        job_id,
        study_uid,
        revision,
        len(ok),
        uids.sop_instance_uid,
    )
    return result


def _preprocess_config(card: dict):
    """The card's preprocessing, completed with what the model's input contract fixes."""
    from sgc_core.preprocess import PreprocessConfig

    data = dict(card.get("preprocess") or {})
    size = int(card["image_size"])
    data.setdefault("image_size", [size, size])
    data.setdefault("channels", int(card.get("channels", 1)))
    data.setdefault("scaling", "[0,1]")
    try:
        config = PreprocessConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise PermanentJobError(f"model card preprocessing is unusable: {exc}") from exc
    if tuple(config.image_size) != (size, size) or config.scaling != "[0,1]":
        raise PermanentJobError(
            f"model card preprocessing {config.image_size} {config.scaling} does not match the "
            f"model input ({size}x{size}, [0,1])"
        )
    return config


def _prepare(instance: Instance, path: Path, config) -> _View:
    """Read and preprocess one image; an image the model cannot take gets an error, not a
    crash, so the rest of the study is still reported. A missing file raises (transient: the
    storage volume may be unmounted)."""
    from sgc_core.preprocess import PreprocessError, preprocess_dataset

    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError as exc:
        return _View(instance, None, error=f"not a readable DICOM file: {exc}")  # type: ignore[arg-type]
    meta = _metadata(ds)
    try:
        pre = preprocess_dataset(ds, config)
    except PreprocessError as exc:
        return _View(instance, meta, error=str(exc), laterality=_lat(ds), view="")
    except (ValueError, NotImplementedError, RuntimeError) as exc:  # undecodable pixel data
        return _View(instance, meta, error=f"cannot decode pixel data: {exc}", laterality=_lat(ds))
    return _View(
        instance,
        meta,
        tensor=pre.tensor,
        bbox=pre.bbox,
        laterality=(pre.laterality or _lat(ds) or "").upper()[:1],
        view=pre.view or "",
        ood_reasons=pre.ood_reasons,
    )


def _metadata(ds: Dataset) -> Dataset:
    """The dataset without pixel data: all the SR needs (evidence, library, ROI source)."""
    meta = Dataset()
    meta.file_meta = ds.file_meta
    for elem in ds:
        if elem.tag.group != 0x7FE0:
            meta.add(elem)
    return meta


def _lat(ds: Dataset) -> str:
    value = str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "").upper()
    return value if value in ("L", "R", "B") else ""


def _algorithm(card: dict) -> srmod.Algorithm:
    op = card.get("operating_point") or {}
    threshold = op.get("threshold", 0.5) if isinstance(op, dict) else float(op)
    positive = card.get("positive_class") or card["classes"][-1]
    if positive not in card["classes"]:
        raise PermanentJobError(f"positive class {positive!r} is not one of {card['classes']}")
    return srmod.Algorithm(
        name=str(card.get("name", "sgc")),
        version=str(card.get("version", "0")),
        sha256=str(card["sha256"]),
        operating_point=float(threshold),
        positive_class=positive,
    )


def _prediction(
    job_id: int, view: _View, result: Any, card: dict, algorithm: srmod.Algorithm
) -> Prediction:
    extra: dict[str, Any] = {"laterality": view.laterality or None, "view": view.view or None}
    if view.bbox is not None:
        extra["bbox"] = list(view.bbox)
    if result is None:
        extra["error"] = view.error
        return Prediction(
            job_id=job_id,
            instance_id=view.instance.id,
            predicted_class=None,
            probabilities={},
            log_likelihoods={},
            model_name=algorithm.name,
            model_version=algorithm.version,
            model_sha256=algorithm.sha256,
            extra=extra,
        )
    extra.update(
        method=result.method,
        positive_class=algorithm.positive_class,
        operating_point=algorithm.operating_point,
        ood_reason=result.ood_reason,
        finding="malignant"
        if result.probabilities[algorithm.positive_class] >= algorithm.operating_point
        else "benign",
    )
    return Prediction(
        job_id=job_id,
        instance_id=view.instance.id,
        predicted_class=result.predicted_class,
        probabilities=dict(result.probabilities),
        log_likelihoods={k: _finite(v) for k, v in result.log_likelihoods.items()},
        bits_per_dim=_finite(result.bits_per_dim),
        ood=bool(result.ood),
        ood_score=_finite(result.ood_score),
        model_name=algorithm.name,
        model_version=algorithm.version,
        model_sha256=algorithm.sha256,
        extra=extra,
    )


def _finite(value: float) -> float | None:
    import math

    return float(value) if value is not None and math.isfinite(value) else None


__all__ = [
    "JobResult",
    "PermanentJobError",
    "run",
]
