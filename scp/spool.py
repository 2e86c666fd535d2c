"""The spool file pynetdicom receives each C-STORE dataset into, made safe on a full disk.

Why: with chunked receiving, pynetdicom writes every P-DATA fragment to a temporary file from
its network thread. On a full volume that write raises ENOSPC inside the DUL reactor, the
thread dies and the sender loses the association with no status at all. This file object
never raises on write: the first failure truncates the file to zero bytes (giving the space
back) and drops the rest of the dataset, so the message still completes and the C-STORE
handler answers 0xA700. pynetdicom always writes a 128-byte preamble and a File Meta group
first, so an empty spool file means exactly this: the dataset could not be received.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from pynetdicom import dimse_messages

log = logging.getLogger(__name__)


class SpoolFile:
    """Quacks like the ``NamedTemporaryFile`` pynetdicom opens (write, file.flush, close, name)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._tmp = tempfile.NamedTemporaryFile(*args, **kwargs)  # noqa: SIM115 - closed by pynetdicom
        self.name = self._tmp.name
        self.error: OSError | None = None

    @property
    def file(self) -> SpoolFile:
        """pynetdicom flushes through ``.file``: route it here so it cannot raise either."""
        return self

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                return self._tmp.write(data)
            except OSError as exc:
                self._fail(exc)
        return len(data)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._tmp.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a buffered tail that cannot be flushed
            self._tmp.close()

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        log.error("cannot spool an incoming dataset to %s: %s", self.name, exc.strerror or exc)
        with contextlib.suppress(OSError):
            os.ftruncate(self._tmp.fileno(), 0)


def install() -> None:
    """Make pynetdicom spool received datasets through :class:`SpoolFile` (process-wide)."""
    dimse_messages.NamedTemporaryFile = SpoolFile  # type: ignore[attr-defined,assignment]


def spool_failed(path: Path | str) -> bool:
    """True when the dataset at ``path`` could not be spooled (see the module docstring)."""
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return True
