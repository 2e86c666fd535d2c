"""Replacing a whole file so that a crash leaves the old file or the new one, never a torn one.

Why one helper: the broker's message files, the SR reports and the model checkpoints each had
their own temp-fsync-rename, and one of them (the checkpoint) never fsync'd, so a power cut
after the rename could leave an empty or partial file under the final name. The steps, each
needed: write a temporary file in the same folder (a rename is atomic only within one
filesystem), fsync it (the data is on disk before the name points at it), rename it over the
final name, fsync the folder (the rename itself is on disk). On any error the temporary file
is removed and the old file stays untouched.

It lives in the bottom package because every room writes files this way; it imports nothing
but the standard library.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Suffix of the temporary files; a hidden name that ends in it is never a finished file.
TMP_SUFFIX = ".tmp"


def fsync_dir(folder: Path | str) -> None:
    """fsync a folder, so that a rename or a new entry in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path | str, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it replaces ``path``.

    For writers that want a file name (``save_as``, safetensors). ``fsync=False`` keeps the
    atomic rename without the flushes (for caches that may be lost).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}"
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def write_atomic(path: Path | str, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8), durably and atomically."""
    raw = data.encode() if isinstance(data, str) else data
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
