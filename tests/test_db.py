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
