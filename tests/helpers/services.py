"""Where the real services tests and benchmarks use live (PostgreSQL, Redis), a free port, and a
required tool.

Here, not in tests/conftest.py, so that benchmarks and helpers import them without importing
pytest's conftest (which registers fixtures and plugins as a side effect); conftest re-exports
them for the tests that import them from there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator

PG_ADMIN_URL = os.environ.get("SGC_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SGC_TEST_REDIS", "redis://127.0.0.1:6379")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(name: str) -> str:
    """The path of tool ``name``; a test fails (not skips) without it: tests use the real tool."""
    path = shutil.which(name)
    if path is None:
        import pytest

        pytest.fail(f"{name} is not installed: run `make deps` (tests use the real tool)")
    return path


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named ``prefix`` + a random suffix (SQLAlchemy URL),
    dropped on exit even if connections are still open, so no run leaves one behind."""
    import psycopg

    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
