"""Recording received instances in the database, the second half of a durable C-STORE.

Why the statement order: the study upsert comes first because it is a write. It takes the
study's row lock on PostgreSQL and SQLite's write lock (waiting on the busy timeout) before
anything is read, so concurrent associations of one study serialize instead of failing on
a stale snapshot, and a re-sent instance is seen by whoever comes second. A study's
``received_rev`` grows only when an instance is new or its content changed; that is what
makes identical re-sends idempotent (no new job) and changed content re-classify.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Instance, Study, utcnow
from scp.storage import StoredFile

log = logging.getLogger(__name__)

Change = Literal["new", "replaced", "unchanged"]


@dataclass(frozen=True)
class ReceivedInstance:
    """What the SCP learned about one instance; UIDs are validated before this exists."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    calling_aet: str
    classifiable: bool
    skip_reason: str | None = None


def _upsert_study(session: Session, study_uid: str) -> int:
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Study).values(
        study_uid=study_uid,
        first_received_at=now,
        last_received_at=now,
        received_rev=0,
        jobbed_rev=0,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[Study.study_uid], set_={"last_received_at": now}
    ).returning(Study.id)
    return session.execute(stmt).scalar_one()


def _record(session: Session, item: ReceivedInstance, stored: StoredFile) -> Change:
    study_id = _upsert_study(session, item.study_uid)
    row = session.scalars(
        select(Instance).where(Instance.sop_instance_uid == item.sop_instance_uid).with_for_update()
    ).one_or_none()
    fields = {
        "study_id": study_id,
        "series_uid": item.series_uid,
        "sop_class_uid": item.sop_class_uid,
        "transfer_syntax_uid": item.transfer_syntax_uid,
        "path": stored.relpath,
        "size": stored.size,
        "sha256": stored.digest,
        "digest_algorithm": stored.algorithm,
        "calling_aet": item.calling_aet,
        "classifiable": item.classifiable,
        "skip_reason": item.skip_reason,
    }
    if row is None:
        session.add(Instance(sop_instance_uid=item.sop_instance_uid, **fields))
        change: Change = "new"
    elif row.sha256 == stored.digest and row.path == stored.relpath:
        return "unchanged"
    elif stored.outcome == "unchanged" and row.path == stored.relpath:
        # Same bytes on disk, the row digested before migration 0004: only the digest moves.
        row.sha256, row.digest_algorithm = stored.digest, stored.algorithm
        return "unchanged"
    else:
        if row.study_id != study_id:  # moved to another study: the old one changed too
            session.execute(
                update(Study)
                .where(Study.id == row.study_id)
                .values(received_rev=Study.received_rev + 1, last_received_at=utcnow())
            )
        for key, value in fields.items():
            setattr(row, key, value)
        change = "replaced"
    session.execute(
        update(Study).where(Study.id == study_id).values(received_rev=Study.received_rev + 1)
    )
    return change


def record_instance(
    session_factory: sessionmaker[Session],
    item: ReceivedInstance,
    stored: StoredFile,
    attempts: int = 5,
) -> Change:
    """Commit the instance's row (and its study's revision) in one transaction.

    Retries a transaction lost to a concurrent insert or a locked SQLite database; any
    other database error propagates so the SCP answers a failure status, never success.
    """
    for attempt in range(1, attempts + 1):
        try:
            with session_factory.begin() as session:
                return _record(session, item, stored)
        except (IntegrityError, OperationalError) as exc:
            locked = isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()
            if attempt == attempts or not (locked or isinstance(exc, IntegrityError)):
                raise
            log.debug("retrying the record of %s after %s", item.sop_instance_uid, type(exc))
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")
