"""The spool file pynetdicom receives each C-STORE dataset into: safe on a full disk, and
ready to become the stored file without a copy.

pynetdicom 3.0.4 (``_config.STORE_RECV_CHUNKED_DATASET``) creates it as
``NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")`` (the name it looks up in
``pynetdicom.dimse_messages``), writes a 128-byte preamble, ``DICM`` and its own File Meta
(one ``write``), then every P-DATA fragment from its network thread with ``.file.flush()``
after each; after the C-STORE handler it closes the file and unlinks its name.

Why a file object of our own:

* Full disk: a write that raises ENOSPC inside the DUL reactor kills the thread and the
  sender loses the association with no status at all. This file never raises on write: the
  first failure truncates it to zero bytes (giving the space back) and drops the rest of the
  dataset, so the message still completes and the handler answers 0xA700. pynetdicom always
  writes a preamble and File Meta first, so an empty spool file means exactly this.
* Speed (see docs/benchmarks.md, Ingest): the storage writer used to copy the spool file
  behind our File Meta, hash the copy and fsync it, inside the C-STORE. Here our File Meta
  replaces pynetdicom's as it is written, with the Source AE Title reserved at its full 16
  characters (the handler fills in the calling AE title without moving a byte; PS3.5 6.2:
  trailing spaces of an AE value are not significant); the dataset bytes are hashed
  (BLAKE3, what the catalog stores, scp/digest.py) as they arrive; and, when the node fsyncs,
  every few megabytes the kernel is asked to start writing them (``sync_file_range``), so the disk works while the network
  does and the final fsync finds little left. :meth:`scp.storage.Storage.adopt` then fsyncs
  the file and renames it into place.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import tempfile
import threading
import uuid
import weakref
from pathlib import Path

from pynetdicom import dimse_messages

from scp.digest import new_hasher
from scp.part10 import (
    AE_LENGTH,
    PREFIX_LENGTH,
    NotPart10,
    meta_end,
    node_meta,
)

log = logging.getLogger(__name__)

# Stands in for the calling AE title, which the spool file cannot know (PS3.5: AE <= 16).
RESERVED_AET = " " * AE_LENGTH
# Start the disk write of what has arrived every this many bytes.
WRITEBACK_EVERY = 4 << 20
_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start writeback of the range's dirty pages, no wait

_REGISTRY: weakref.WeakValueDictionary[str, SpoolFile] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def _load_sync_file_range():
    """libc's ``sync_file_range`` (Linux), or None where there is none."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


class SpoolFile:
    """Quacks like the ``NamedTemporaryFile`` pynetdicom opens (write, file.flush, close, name).

    Read by the storage writer: ``name``, ``fd``, ``offset`` (where the dataset starts; None
    until the File Meta is complete), ``size`` (dataset bytes), :meth:`digest`.
    """

    # Start the disk write every this many bytes; None: leave it to the kernel (see install).
    writeback_every: int | None = WRITEBACK_EVERY

    def __init__(self, *, suffix: str = ".dcm", delete: bool = False, mode: str = "wb") -> None:
        if delete or mode != "wb":
            raise ValueError("SpoolFile supports only delete=False, mode='wb'")
        self.name = os.path.join(tempfile.gettempdir(), f"{uuid.uuid4().hex}{suffix}")
        self.fd = os.open(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        self.error: OSError | None = None
        self.offset: int | None = None
        self.ours = True  # the header is our File Meta (else only the copying writer may run)
        self.size = 0
        self.closed = False
        self._head = bytearray()
        self._digest = new_hasher()
        self._written = 0
        self._written_back = 0
        with _LOCK:
            _REGISTRY[self.name] = self

    @property
    def file(self) -> SpoolFile:
        """pynetdicom flushes through ``.file``: route it here so it cannot raise either."""
        return self

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.error is None:
            try:
                if self.offset is None:
                    self._head += data
                    self._start_dataset()
                else:
                    self._append(data)
            except OSError as exc:
                self._fail(exc)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: every write went straight to the kernel."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with _LOCK:
            if _REGISTRY.get(self.name) is self:
                del _REGISTRY[self.name]

    def __del__(self) -> None:  # an aborted association drops the file without closing it
        with contextlib.suppress(Exception):
            self.close()

    def digest(self) -> str:
        """Digest of the dataset bytes (the File Meta excluded), as ``dataset_digest``."""
        return self._digest.hexdigest()

    @property
    def adoptable(self) -> bool:
        """Complete File Meta of ours, no write error: the storage writer may rename it."""
        return self.error is None and not self.closed and self.offset is not None and self.ours

    def _start_dataset(self) -> None:
        """Once pynetdicom's File Meta is complete, write ours instead, then what follows."""
        head = self._head
        if len(head) < PREFIX_LENGTH:
            return
        try:
            end = meta_end(head)
        except NotPart10:
            end = len(head)  # not what pynetdicom writes: pass it through, never adopt it
            self.ours = False
        if len(head) < end:
            return
        try:
            if not self.ours:
                raise NotPart10("no File Meta group length")
            ours = node_meta(head[:end], RESERVED_AET)
        except Exception as exc:  # odd UIDs from a peer's command set: keep pynetdicom's
            log.debug("spool %s keeps pynetdicom's File Meta: %s", self.name, exc)
            ours = bytes(head[:end])
            self.ours = False
        self._head = bytearray()
        self._write_all(ours)
        self.offset = len(ours)
        if len(head) > end:
            self._append(memoryview(head)[end:])

    def _append(self, data: bytes | bytearray | memoryview) -> None:
        self._digest.update(data)
        self.size += len(data)
        self._write_all(data)
        pending = self._written - self._written_back
        every = self.writeback_every
        if _sync_file_range is not None and every is not None and pending >= every:
            _sync_file_range(self.fd, self._written_back, pending, _SYNC_FILE_RANGE_WRITE)
            self._written_back = self._written

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            done = os.write(self.fd, view)
            view = view[done:]
            self._written += done

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        log.error("cannot spool an incoming dataset to %s: %s", self.name, exc.strerror or exc)
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)


def install(early_writeback: bool = True) -> None:
    """Make pynetdicom spool received datasets through :class:`SpoolFile` (process-wide).

    ``early_writeback``: start each dataset's disk write as it arrives, so that the fsync
    at acknowledgement finds little left. A node that does not fsync (``SGC_FSYNC=false``)
    turns it off: there it only moved the kernel's write-back into the receive thread, about
    4 ms of CPU per 17 MB image at 8 associations here.
    """
    SpoolFile.writeback_every = WRITEBACK_EVERY if early_writeback else None
    dimse_messages.NamedTemporaryFile = SpoolFile  # type: ignore[attr-defined,assignment]


def spool_failed(path: Path | str) -> bool:
    """True when the dataset at ``path`` could not be spooled (see the module docstring)."""
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return True


def lookup(path: Path | str) -> SpoolFile | None:
    """The open, intact :class:`SpoolFile` behind ``event.dataset_path``, if one of ours."""
    with _LOCK:
        spooled = _REGISTRY.get(os.fspath(path))
    return spooled if spooled is not None and spooled.adoptable else None
