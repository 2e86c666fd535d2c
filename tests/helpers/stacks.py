"""The two stacks a fault test runs the node on: the embedded default and Redis + PostgreSQL.

Why both: the embedded default (SQLite, the filesystem broker in the data folder) is what a
new user runs first and it has no broker that redelivers; production runs Redis, which does,
and PostgreSQL. A fault test takes the ``database_url`` fixture (SQLite or PostgreSQL) and
gets the node settings of the matching stack from :func:`stack_settings`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from tests.helpers.services import REDIS_URL

REDIS_DB = 12


def stack_name(database_url: str) -> str:
    return "embedded" if database_url.startswith("sqlite") else "redis+postgresql"


@contextlib.contextmanager
def stack_settings(database_url: str) -> Iterator[dict[str, object]]:
    """SGC_* settings (without the prefix) of the stack that goes with ``database_url``.

    SQLite means the embedded default: no database or broker URL at all, so the node uses its
    data folder exactly as `make run` does. PostgreSQL comes with Redis under a key prefix of
    its own, whose keys are deleted afterwards.
    """
    if database_url.startswith("sqlite"):
        yield {}
        return
    import redis

    prefix = f"sgc-stack-{uuid.uuid4().hex[:8]}:"
    try:
        yield {
            "database_url": database_url,
            "broker_url": f"{REDIS_URL}/{REDIS_DB}?global_keyprefix={prefix}",
        }
    finally:
        client = redis.Redis.from_url(f"{REDIS_URL}/{REDIS_DB}")
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
