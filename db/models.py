"""Tables of the node, one class each; names follow the data flow in docs/architecture.md.

No patient identifiers are stored: rows carry UIDs and file paths, the DICOM files hold the rest.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True)}


class JobState(enum.StrEnum):
    """Life of a classification job: pending (in the outbox) -> running -> done | failed."""

    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


def lost_worker_reason(lost_attempts: int) -> str:
    """The error of a job failed because its workers kept dying (a poison study); one text
    for the SCP's sweeper and a worker's claim, which both enforce SGC_MAX_ATTEMPTS."""
    return (
        f"worker died {lost_attempts} times while classifying; not sent again "
        "(a poison study: SGC_MAX_ATTEMPTS reached)"
    )


class DeliveryState(enum.StrEnum):
    """Life of one report's delivery to one archive: pending -> sent | failed (terminal)."""

    pending = "pending"
    sent = "sent"
    failed = "failed"


class Study(Base):
    """A study as received; ``received_rev`` grows with every new or changed instance.

    A study is settled when nothing arrived for the stable age; a job is created for it when
    ``received_rev`` is ahead of ``jobbed_rev`` (the revision the last job covered).
    """

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    received_rev: Mapped[int] = mapped_column(Integer, default=0)
    jobbed_rev: Mapped[int] = mapped_column(Integer, default=0)

    instances: Mapped[list[Instance]] = relationship(back_populates="study")
    jobs: Mapped[list[Job]] = relationship(back_populates="study", order_by="Job.revision")


class Instance(Base):
    """One stored SOP instance; ``path`` is relative to the storage root."""

    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    # The dataset bytes' digest (hex) in ``digest_algorithm``: ``blake3`` since migration 0004
    # (scp/digest.py), ``sha256`` in rows written before; the column kept its first name.
    sha256: Mapped[str] = mapped_column(String(64))
    digest_algorithm: Mapped[str] = mapped_column(String(16), default="blake3")
    calling_aet: Mapped[str] = mapped_column(String(16), default="")
    classifiable: Mapped[bool] = mapped_column(Boolean, default=True)
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship(back_populates="instances")


class Job(Base):
    """One classification of one study revision; the outbox row behind a Celery task."""

    __tablename__ = "job"
    __table_args__ = (UniqueConstraint("study_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, native_enum=False, length=16), default=JobState.pending, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Claims that ended with their worker gone (killed, or its heartbeat stopped for a lease):
    # counted apart from ``attempts`` so that transient retries do not make a study "poison".
    lost_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dispatch_count: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship(back_populates="jobs")
    predictions: Mapped[list[Prediction]] = relationship(back_populates="job")
    reports: Mapped[list[Report]] = relationship(back_populates="job")


class Prediction(Base):
    """The classifier's output for one image of one job."""

    __tablename__ = "prediction"
    __table_args__ = (UniqueConstraint("job_id", "instance_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id"), index=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    predicted_class: Mapped[str | None] = mapped_column(String(64), nullable=True)
    probabilities: Mapped[dict] = mapped_column(JSON, default=dict)
    log_likelihoods: Mapped[dict] = mapped_column(JSON, default=dict)
    bits_per_dim: Mapped[float | None] = mapped_column(Float, nullable=True)
    ood: Mapped[bool] = mapped_column(Boolean, default=False)
    ood_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="predictions")
    instance: Mapped[Instance] = relationship()


class Report(Base):
    """A Structured Report written for a job; its UIDs are deterministic per job revision."""

    __tablename__ = "report"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="reports")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="report")


class Delivery(Base):
    """Delivery of one report to one archive; the outbox row behind a deliver task."""

    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("report_id", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("report.id"), index=True)
    destination: Mapped[str] = mapped_column(String(300))
    state: Mapped[DeliveryState] = mapped_column(
        Enum(DeliveryState, native_enum=False, length=16),
        default=DeliveryState.pending,
        index=True,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    report: Mapped[Report] = relationship(back_populates="deliveries")
