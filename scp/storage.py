"""The durable writer: received bytes become ``storage/<study>/<series>/<sop>.dcm``.

Why each step: the C-STORE acknowledgement promises the sender it may delete its copy, so a
file must survive a crash the instant 0x0000 leaves. The encoded dataset is kept as
received (no decode/re-encode: faster, bit-preserving) behind our own File Meta
Information in a temporary file on the same volume, fsync'd, renamed atomically over the
final name, and the directory is fsync'd so the rename itself is durable. Readers therefore
see either the old complete file or the new complete file, never a partial one. A re-sent
instance with identical content leaves the stored file untouched; a changed one replaces it.

The temporary file is normally pynetdicom's spool file itself (:meth:`Storage.adopt`, see
scp/spool.py: our File Meta already in place, hashed while received); :meth:`Storage.store`
copies any other file behind our File Meta first.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydicom.dataset import FileMetaDataset

from scp.digest import ALGORITHM, dataset_digest, new_hasher
from scp.part10 import encode_meta, file_meta
from scp.uids import require_uid
from sgc_config.atomic import fsync_dir

__all__ = [
    "Spooled",
    "Storage",
    "StorageFull",
    "StoredFile",
    "dataset_digest",
    "dataset_sha256",
    "file_meta",
]

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".partial"
_CHUNK = 1 << 20
Outcome = Literal["new", "replaced", "unchanged"]


class Spooled(Protocol):
    """What :meth:`Storage.adopt` needs of a spool file (scp/spool.py's ``SpoolFile``).

    A protocol, not an import: the spool file uses Part 10 framing (scp/part10.py) and never
    the storage writer, and the storage writer only reads these, so neither imports the other.
    """

    name: str
    fd: int
    offset: int | None
    size: int

    def digest(self) -> str: ...


class StorageFull(OSError):
    """Storage cannot take the instance: below the free-space watermark or not writable."""


@dataclass(frozen=True)
class StoredFile:
    """Where an instance landed; ``digest`` (``algorithm``, scp/digest.py) of the dataset bytes."""

    relpath: str
    size: int
    digest: str
    outcome: Outcome
    algorithm: str = ALGORITHM


def instance_relpath(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """``<study>/<series>/<sop>.dcm`` from validated UIDs (raises ``InvalidUID`` otherwise)."""
    study = require_uid("StudyInstanceUID", study_uid)
    series = require_uid("SeriesInstanceUID", series_uid)
    sop = require_uid("SOPInstanceUID", sop_instance_uid)
    return f"{study}/{series}/{sop}.dcm"


# The name callers outside scp/ used before the digest became BLAKE3 (migration 0004): it
# returns what the catalog records, ``Instance.sha256`` (a column that kept its first name).
dataset_sha256 = dataset_digest


def _make_dirs(folder: Path, root: Path) -> list[Path]:
    """Create ``folder`` and missing parents below ``root``; return the ones created."""
    missing = []
    current = folder
    while current != root and not current.is_dir():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir()
    return missing


class Storage:
    """The storage root, its durability policy and its free-space watermark."""

    def __init__(self, root: Path, fsync: bool = True, min_free_mb: int = 0) -> None:
        self.root = Path(root).resolve()
        self.fsync = fsync
        self.min_free_mb = min_free_mb

    @property
    def incoming(self) -> Path:
        """Where files are written before their rename: one folder, so cleanup is cheap."""
        return self.root / ".incoming"

    def prepare(self) -> int:
        """Create the root and remove temporaries left by a crash; return how many."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        removed = 0
        for temp in self.incoming.glob(f"*{TEMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
                removed += 1
        if removed:
            log.warning("removed %d incomplete temporary file(s) in %s", removed, self.incoming)
        return removed

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def check_room(self, incoming: int = 0) -> None:
        """Raise :class:`StorageFull` when ``incoming`` bytes would cross the watermark."""
        try:
            free = self.free_bytes()
        except OSError as exc:
            raise StorageFull(exc.errno, f"storage root unusable: {exc.strerror}") from None
        need = self.min_free_mb * 1024 * 1024 + incoming
        if free < need:
            raise StorageFull(
                errno.ENOSPC,
                f"storage has {free // (1024 * 1024)} MiB free, below the watermark of "
                f"{self.min_free_mb} MiB plus this instance",
            )

    def path_of(self, relpath: str) -> Path:
        return self.root / relpath

    def store(
        self,
        source: Path,
        offset: int,
        meta: FileMetaDataset,
        study_uid: str,
        series_uid: str,
    ) -> StoredFile:
        """Copy the dataset ``source[offset:]`` behind ``meta`` to its durable place.

        Raises :class:`StorageFull` for the watermark and any OS error while writing (no
        space, read-only, not a directory); an existing file is never touched on failure.
        """
        relpath = instance_relpath(study_uid, series_uid, meta.MediaStorageSOPInstanceUID)
        target = self.root / relpath
        size = os.path.getsize(source) - offset
        self.check_room(size)
        temp = self.incoming / f"{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
            new_dirs = _make_dirs(target.parent, self.root)
            digest = new_hasher()
            with open(source, "rb") as src, open(temp, "xb") as dst:
                dst.write(encode_meta(meta))
                src.seek(offset)
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                if self.fsync:
                    os.fsync(dst.fileno())
            digest_hex = digest.hexdigest()
            return self._place(temp, relpath, size, digest_hex, new_dirs, fsync_file=None)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            if isinstance(exc, StorageFull):
                raise
            raise StorageFull(exc.errno or errno.EIO, f"cannot write {relpath}: {exc}") from exc

    def adopt(
        self, spooled: Spooled, meta: FileMetaDataset, study_uid: str, series_uid: str
    ) -> StoredFile | None:
        """Rename a complete spool file into place instead of copying it; None if it can't.

        The spool file already holds the dataset after a File Meta of exactly our length
        (scp/spool.py), already hashed and mostly written back: only the header is rewritten
        in place, then the file is fsync'd and renamed like :meth:`store` renames its copy.
        None (nothing touched) when the header would not fit or the spool directory is on
        another filesystem; the caller then copies with :meth:`store`. pynetdicom unlinks
        the spool name after the handler, which is harmless once it was renamed.
        """
        relpath = instance_relpath(study_uid, series_uid, meta.MediaStorageSOPInstanceUID)
        header = encode_meta(meta)
        if len(header) != spooled.offset:
            return None
        target = self.root / relpath
        self.check_room(spooled.size)
        try:
            if os.stat(spooled.fd).st_dev != os.stat(self.root).st_dev:
                return None
            new_dirs = _make_dirs(target.parent, self.root)
            if os.pwrite(spooled.fd, header, 0) != len(header):
                raise OSError(errno.EIO, "short write of the file meta")
            return self._place(
                Path(spooled.name), relpath, spooled.size, spooled.digest(), new_dirs, spooled.fd
            )
        except OSError as exc:
            if isinstance(exc, StorageFull):
                raise
            raise StorageFull(exc.errno or errno.EIO, f"cannot write {relpath}: {exc}") from exc

    def _place(
        self,
        temp: Path,
        relpath: str,
        size: int,
        digest: str,
        new_dirs: list[Path],
        fsync_file: int | None,
    ) -> StoredFile:
        """Rename the complete ``temp`` over ``relpath`` unless that holds the same dataset.

        ``fsync_file``: a descriptor of ``temp`` still to be fsync'd (None: already done);
        an unchanged re-send skips that fsync, since the file is thrown away.
        """
        target = self.root / relpath
        outcome: Outcome = "new"
        if target.exists():
            try:
                same = dataset_digest(target) == digest
            except (OSError, ValueError):
                same = False  # unreadable old file: the new complete one replaces it
            if same:
                temp.unlink(missing_ok=True)
                return StoredFile(relpath, size, digest, "unchanged")
            outcome = "replaced"
        if self.fsync and fsync_file is not None:
            os.fsync(fsync_file)
        os.replace(temp, target)
        if self.fsync:
            fsync_dir(target.parent)
            for created in new_dirs:  # a new directory's entry lives in its parent
                fsync_dir(created.parent)
        if outcome == "replaced":
            log.info("replaced %s: content differs from the stored copy", relpath)
        return StoredFile(relpath, size, digest, outcome)
