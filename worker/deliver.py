"""Delivery of a written SR to the archive(s): C-STORE or STOW-RS, and the Delivery outbox rows.

Why the bookkeeping lives in the database: an archive may be down for hours (maintenance), a
worker may die mid-attempt, a broker message may be lost. Each Delivery row (one per report and
destination) says what is left to do and when (``next_attempt_at``), so any deliver task or the
sweeper can pick it up; a duplicate store is harmless because the SR's UIDs are deterministic.
A destination is ``AET@host:port`` (worker/dimse.py, the node's one C-STORE sender, over TLS
when SGC_ARCHIVE_TLS_CA is set) or ``dicomweb+https://...`` (worker/stow.py); both give a
:class:`~worker.dimse.StoreOutcome`, so retries, backoff and final states are the same.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Delivery, DeliveryState, Report
from sgc_config.settings import DicomWebNode, Settings, parse_destination
from worker import metrics
from worker.dimse import ACSE_TIMEOUT, DIMSE_TIMEOUT, StoreOutcome, TlsClient, store_file
from worker.stow import stow_file

log = logging.getLogger(__name__)


def archive_tls(settings: Settings) -> TlsClient | None:
    """TLS for the outbound link to the archive (SGC_ARCHIVE_TLS_*); None when not asked."""
    if settings.archive_tls_ca is None:
        return None
    return TlsClient(settings.archive_tls_ca, settings.archive_tls_cert, settings.archive_tls_key)


def send_report(path: Path, destination: str, settings: Settings) -> StoreOutcome:
    """Store the SR at ``path`` at one destination, by DIMSE C-STORE or by STOW-RS.

    Raises ValueError for a destination that can never be reached (unparseable).
    """
    node = parse_destination(destination)
    tls = archive_tls(settings)
    if isinstance(node, DicomWebNode):
        token = settings.archive_token.get_secret_value() if settings.archive_token else None
        return stow_file(path, node, token, tls)
    return store_file(path, node, settings.ae_title, tls)


def backoff(attempts: int, settings: Settings) -> float:
    """Seconds to wait after the ``attempts``-th failure: base * 2^(n-1), capped."""
    exp = min(max(attempts - 1, 0), 40)
    return min(settings.delivery_retry_base * (2.0**exp), settings.delivery_retry_max)


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the node writes only UTC, so naive means UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def create_deliveries(session: Session, report: Report, settings: Settings) -> list[Delivery]:
    """One pending Delivery per configured archive (existing rows are kept: idempotent)."""
    existing = {d.destination: d for d in report.deliveries}
    out = []
    for node in settings.archive:
        row = existing.get(str(node))
        if row is None:
            row = Delivery(report_id=report.id, destination=str(node), state=DeliveryState.pending)
            session.add(row)
        out.append(row)
    return out


def deliver_pending(
    sessions: sessionmaker[Session], settings: Settings, report_id: int
) -> float | None:
    """Attempt every due, pending delivery of the report; return seconds until the next one is
    due (None when nothing is left pending).

    Each attempt is claimed first with a conditional UPDATE that pushes ``next_attempt_at`` one
    lease ahead: two workers holding duplicate messages never store concurrently, and a worker
    killed mid-attempt leaves a row that becomes due again after the lease.
    """
    storage = settings.resolved_storage_dir
    with sessions() as session:
        report = session.get(Report, report_id)
        if report is None:
            raise LookupError(f"report {report_id} does not exist")
        path = storage / report.path
        ids = [d.id for d in report.deliveries if d.state == DeliveryState.pending]
    for delivery_id in ids:
        _attempt(sessions, settings, delivery_id, path)
    return _next_due(sessions, report_id)


def _claim(
    sessions: sessionmaker[Session], settings: Settings, delivery_id: int
) -> tuple[str, int, datetime] | None:
    """Take the due delivery for one lease: (destination, attempts, created), or None."""
    now = datetime.now(UTC)
    lease = now + timedelta(seconds=max(settings.resend_after, DIMSE_TIMEOUT + ACSE_TIMEOUT))
    with sessions() as session:
        claimed = session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.state == DeliveryState.pending,
                or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
            )
            .values(attempts=Delivery.attempts + 1, next_attempt_at=lease, dispatched_at=now)
        ).rowcount
        session.commit()
        if not claimed:
            return None
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        return delivery.destination, delivery.attempts, _aware(delivery.created_at)


def _attempt(
    sessions: sessionmaker[Session], settings: Settings, delivery_id: int, path: Path
) -> None:
    claim = _claim(sessions, settings, delivery_id)
    if claim is None:
        return
    destination, attempts, created = claim
    try:
        outcome = send_report(path, destination, settings) if path.exists() else None
    except ValueError as exc:  # an unparseable destination can never succeed
        _finish(sessions, delivery_id, DeliveryState.failed, None, str(exc), None)
        return
    if outcome is None:
        _finish(
            sessions, delivery_id, DeliveryState.failed, None, f"SR file {path} is missing", None
        )
        return
    if outcome.stored:
        log.info(
            "delivered report file %s to %s (status 0x%04X)", path.name, destination, outcome.status
        )
        _finish(sessions, delivery_id, DeliveryState.sent, outcome.status, None, None)
        metrics.DELIVERY_ATTEMPTS.labels("sent").inc()
        return
    wait = backoff(attempts, settings)
    give_up = created + timedelta(seconds=settings.delivery_give_up)
    next_at = datetime.now(UTC) + timedelta(seconds=wait)
    if next_at > give_up:
        log.error(
            "giving up delivery to %s after %d attempts: %s", destination, attempts, outcome.error
        )
        _finish(sessions, delivery_id, DeliveryState.failed, outcome.status, outcome.error, None)
        metrics.DELIVERY_ATTEMPTS.labels("failed").inc()
        return
    log.warning(
        "delivery to %s failed (attempt %d): %s; next try in %.0f s",
        destination,
        attempts,
        outcome.error,
        wait,
    )
    _finish(sessions, delivery_id, DeliveryState.pending, outcome.status, outcome.error, next_at)
    metrics.DELIVERY_ATTEMPTS.labels("retry").inc()


def _finish(
    sessions: sessionmaker[Session],
    delivery_id: int,
    state: DeliveryState,
    status: int | None,
    error: str | None,
    next_at: datetime | None,
) -> None:
    with sessions() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(state=state, last_status=status, last_error=error, next_attempt_at=next_at)
        )
        session.commit()


def _next_due(sessions: sessionmaker[Session], report_id: int) -> float | None:
    with sessions() as session:
        pending = session.scalars(
            select(Delivery.next_attempt_at).where(
                Delivery.report_id == report_id, Delivery.state == DeliveryState.pending
            )
        ).all()
    if not pending:
        return None
    now = datetime.now(UTC)
    return max(0.0, min((_aware(t) - now).total_seconds() if t else 0.0 for t in pending))
