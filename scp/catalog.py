"""Recording received instances in the database, the second half of a durable C-STORE.

Why the statement order: the study upsert comes first because it is a write. It takes the
study's row lock on PostgreSQL and SQLite's write lock (waiting on the busy timeout) before
anything is read, so concurrent associations of one study serialize instead of failing on
a stale snapshot, and a re-sent instance is seen by whoever comes second. A study's
``received_rev`` grows only when an instance is new or its content changed; that is what
makes identical re-sends idempotent (no new job) and changed content re-classify.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import CursorResult, Executable, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Instance, Study, utcnow
from scp.storage import StoredFile

log = logging.getLogger(__name__)
STUDY, INSTANCE = Study.__table__, Instance.__table__

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


@dataclass(frozen=True)
class _Statements:
    """The fast path's statements, built once per dialect and run with parameters.

    Why: building a statement with literal values costs more Python than running it
    (SQLAlchemy coerces every value); these take bound parameters instead.
    """

    upsert_study: Executable
    insert_new: Executable
    bump_revision: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = insert(STUDY)
    upsert = upsert.on_conflict_do_update(
        index_elements=[STUDY.c.study_uid],
        set_={"last_received_at": upsert.excluded.last_received_at},
    ).returning(STUDY.c.id)
    insert_new = (
        insert(INSTANCE)
        .on_conflict_do_nothing(index_elements=[INSTANCE.c.sop_instance_uid])
        .returning(INSTANCE.c.id)
    )
    bump = (
        update(STUDY)
        .where(STUDY.c.id == bindparam("study"))
        .values(received_rev=STUDY.c.received_rev + 1)
    )
    return _Statements(upsert, insert_new, bump)


def _run(session: Session, name: str, params: dict) -> CursorResult:
    connection = session.connection()
    statement = getattr(_statements(connection.dialect.name), name)
    return connection.execute(statement, params)


def _upsert_study(session: Session, study_uid: str) -> int:
    now = utcnow()
    params = {
        "study_uid": study_uid,
        "first_received_at": now,
        "last_received_at": now,
        "received_rev": 0,
        "jobbed_rev": 0,
    }
    return _run(session, "upsert_study", params).scalar_one()


def _insert_new(session: Session, item: ReceivedInstance, fields: dict) -> bool:
    """Insert the row unless the SOP Instance UID is known; True when it was inserted.

    Why: the common case (a new instance) then costs one INSERT instead of the ORM's
    locking SELECT, unit of work and flush, which were a fifth of the SCP's Python time
    per image. A known UID (or one inserted concurrently, which PostgreSQL waits for)
    inserts nothing and takes the ORM path.
    """
    now = utcnow()
    params = {"sop_instance_uid": item.sop_instance_uid, "received_at": now, "updated_at": now}
    return _run(session, "insert_new", params | fields).first() is not None


def _bump_revision(session: Session, study_id: int) -> None:
    """The study changed: a job for its new revision will be due."""
    _run(session, "bump_revision", {"study": study_id})


def _record(session: Session, item: ReceivedInstance, stored: StoredFile) -> Change:
    study_id = _upsert_study(session, item.study_uid)
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
    if _insert_new(session, item, fields):
        _bump_revision(session, study_id)
        return "new"
    row = session.scalars(
        select(Instance).where(Instance.sop_instance_uid == item.sop_instance_uid).with_for_update()
    ).one_or_none()
    if row is None:  # deleted meanwhile (PostgreSQL's insert saw it, the select did not)
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
    _bump_revision(session, study_id)
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
