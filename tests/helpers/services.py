"""Where the real services tests and benchmarks use live (PostgreSQL, Redis), a free port, and a
required tool.

Here, not in tests/conftest.py, so that benchmarks and helpers import them without importing
pytest's conftest (which registers fixtures and plugins as a side effect); conftest re-exports
them for the tests that import them from there.
"""

from __future__ import annotations

import os
import shutil
import socket

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
