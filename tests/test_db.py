"""Database: migrations match the models, constraints hold, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import Base, Instance, Job, JobState, Study, make_engine, make_session_factory, upgrade
from db.session import current_revision


def test_migrations_produce_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
    assert current_revision(database_url) is not None
    upgrade(database_url)  # idempotent


def _instance(study: Study, sop: str) -> Instance:
    return Instance(
        study=study,
        series_uid="1.2.3.4",
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        path=f"x/{sop}.dcm",
        size=10,
        sha256="0" * 64,
    )


def test_sop_instance_uid_is_unique(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        study = Study(study_uid="1.2.3")
        s.add_all([study, _instance(study, "1.2.3.4.5")])
        s.commit()
    with sessions() as s, pytest.raises(IntegrityError):
        study = s.scalars(select(Study)).one()
        s.add(_instance(study, "1.2.3.4.5"))
        s.commit()
    engine.dispose()


def test_one_job_per_study_revision(database_url: str) -> None:
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        study = Study(study_uid="1.2.3")
        s.add_all([study, Job(study=study, revision=1)])
        s.commit()
        job = s.scalars(select(Job)).one()
        assert job.state is JobState.pending and job.attempts == 0
    with sessions() as s, pytest.raises(IntegrityError):
        s.add(Job(study_id=job.study_id, revision=1))
        s.commit()
    engine.dispose()


def test_0002_keeps_existing_jobs_with_no_lost_attempts(database_url: str) -> None:
    """A node upgraded in place: its jobs get ``lost_attempts`` 0; the step also goes back."""
    from alembic import command
    from sqlalchemy import text

    from db.session import alembic_config

    command.downgrade(alembic_config(database_url), "0001")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO study (id, study_uid, first_received_at, last_received_at, "
                "received_rev, jobbed_rev) VALUES (1, '1.2.3', :t, :t, 1, 1)"
            ),
            {"t": "2026-11-30 00:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO job (id, study_id, revision, state, attempts, dispatch_count, "
                "created_at, updated_at) VALUES (1, 1, 1, 'running', 1, 1, :t, :t)"
            ),
            {"t": "2026-11-30 00:00:00"},
        )
    engine.dispose()
    upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as s:
        job = s.get(Job, 1)
        assert (job.state, job.attempts, job.lost_attempts) == (JobState.running, 1, 0)
    engine.dispose()
    assert current_revision(database_url) != "0001"
