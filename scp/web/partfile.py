"""One STOW-RS part on disk, written so the storage writer can rename it instead of copying it.

Why: the SCP's spool file (scp/spool.py) already puts the node's own File Meta in front of
the dataset as it arrives and hashes the dataset bytes on the way, so a C-STORE ends in one
fsync and a rename. A STOW-RS part is a whole Part 10 file with the sender's File Meta: here
its first bytes are held until that File Meta is complete, then the node's File Meta (same
SOP class, instance and transfer syntax) is written instead, and the dataset bytes follow,
hashed as they pass. :meth:`scp.storage.Storage.adopt` then renames the file into place. A
part that does not start with a readable File Meta is written as it came (``offset`` None):
the checks then refuse it, and nothing is renamed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from scp.digest import new_hasher
from scp.part10 import PREFIX_LENGTH, meta_end, node_meta

#: A File Meta group is a few hundred bytes; more is a corrupt or hostile length.
MAX_META = 64 * 1024


class PartFile:
    """Write side of a part file; after :meth:`close`, what :meth:`Storage.adopt` reads.

    ``offset``: where the dataset starts behind our File Meta (None: written as received);
    ``size``: dataset bytes; ``received``: bytes of the part as sent.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.offset: int | None = None
        self.size = 0
        self.received = 0
        self._head: bytearray | None = bytearray()
        self._digest = new_hasher()

    def write(self, data: bytes | memoryview) -> None:
        self.received += len(data)
        if self._head is None:
            self._append(data)
            return
        self._head += data
        if len(self._head) < PREFIX_LENGTH:
            return
        try:
            end = meta_end(self._head)
        except ValueError:  # not Part 10: keep the bytes as they are
            self._raw()
            return
        if end > MAX_META:
            self._raw()
        elif len(self._head) >= end:
            self._rewrite(end)

    def close(self) -> None:
        if self._head is not None:  # shorter than its own File Meta
            self._raw()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @contextlib.contextmanager
    def reopened(self) -> Iterator[PartFile]:
        """The closed file open again for the storage writer (header rewrite, fsync)."""
        self.fd = os.open(self.path, os.O_RDWR)
        try:
            yield self
        finally:
            os.close(self.fd)
            self.fd = None

    def digest(self) -> str:
        """Digest of the dataset bytes (scp/digest.py), as ``dataset_digest`` of the file."""
        return self._digest.hexdigest()

    def _rewrite(self, end: int) -> None:
        head, self._head = self._head, None
        try:
            ours = node_meta(head[:end])
        except Exception:  # pydicom raises many types for a broken File Meta
            self._head = head
            self._raw()
            return
        self._write_all(ours)
        self.offset = len(ours)
        self._append(memoryview(head)[end:])

    def _raw(self) -> None:
        head, self._head = self._head, None
        self._write_all(head or b"")

    def _append(self, data: bytes | memoryview) -> None:
        self._digest.update(data)
        self.size += len(data)
        self._write_all(data)

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
