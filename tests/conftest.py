"""Shared fixtures: free ports, databases (SQLite and the real PostgreSQL), settings.

PostgreSQL runs on 127.0.0.1:5432 with trust auth on this machine and in CI; each test
session creates its own throw-away database there and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Defined in tests/helpers/services.py (benchmarks use them too); tests import them from here.
from tests.helpers.services import PG_ADMIN_URL, REDIS_URL, free_port, require_binary  # noqa: F401

# Fixtures of the real peers (e.g. `orthanc`) are available to every test module.
pytest_plugins = ["tests.helpers.orthanc"]


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (SQLAlchemy URL)."""
    import psycopg

    name = f"sgc_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite in tmp_path, or a fresh PostgreSQL database."""
    from db.session import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sgc.db'}"
    else:
        import psycopg

        name = f"sgc_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        url = f"{base}/{name}"
    upgrade(url)
    yield url
    if request.param == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny, 16 px) model trained through sgc_core in seconds; cached per session."""
    from tests.helpers.tiny_model import train_tiny_model

    return train_tiny_model(tmp_path_factory.getbasetemp() / "tiny-model")


@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Clear SGC_* variables and point the data directory at tmp_path."""
    for key in list(os.environ):
        if key.startswith("SGC_") and not key.startswith("SGC_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SGC_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"
