"""Storing one STOW-RS part the way the SCP stores one C-STORE: check, write durably, record.

Why the same code: a study may arrive half by DIMSE and half by DICOMweb, and the node must
treat both halves alike. The part's File Meta plays the C-STORE command's role (its Media
Storage SOP Class and Instance UIDs must agree with the dataset, as the presentation context
and Affected SOP Instance UID must); then :func:`scp.handlers.read_header` and
:func:`scp.handlers.validate_uids` run unchanged, :class:`scp.storage.Storage` puts the
file in place (the part file renamed, as the SCP's spool file is, or else copied; fsync,
rename, directory fsync) and :func:`scp.catalog.record_instance` commits the row.
Only then does the instance count as stored in the response. Each failure carries the same
status the SCP would answer, as the response's FailureReason (PS3.18 10.5.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from scp import statuses
from scp.catalog import ReceivedInstance, record_instance
from scp.encoding import MalformedDataset
from scp.handlers import (
    Rejection,
    read_header,
    received_instance,
    storage_rejections,
    validate_uids,
)
from scp.part10 import PREFIX_LENGTH, NotPart10, file_meta, meta_end, read_meta
from scp.storage import Storage
from scp.web.multipart import DICOM_TYPE, SpooledPart
from scp.web.partfile import MAX_META

log = logging.getLogger(__name__)

#: What the catalog records as the sender of an instance that came in by STOW-RS.
WEB_SOURCE = "DICOMWEB"
#: PS3.4 C.4.2 / PS3.18: Referenced Transfer Syntax not supported.
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
#: The instance belongs to another study than the one in the request's URL; the A9xx family
#: ("Data Set does not match") is the closest the standard offers.
STUDY_MISMATCH = 0xA900


@dataclass(frozen=True)
class PartResult:
    """What became of one part: stored (status None) or failed with a status and reason."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str = ""
    failure: int | None = None
    reason: str = ""

    @property
    def stored(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class Policy:
    """What the door accepts: the SOP classes, the ones it classifies, the transfer syntaxes."""

    accepted_sop_classes: frozenset[str]
    classifiable_sop_classes: frozenset[str]
    transfer_syntaxes: frozenset[str]


def store_part(
    part: SpooledPart,
    storage: Storage,
    sessions: sessionmaker[Session],
    policy: Policy,
    study_uid: str | None,
) -> PartResult:
    """Check, store and record one spooled part; never raises for a bad part."""
    known = {"sop_class_uid": "", "sop_instance_uid": ""}
    try:
        return _store(part, storage, sessions, policy, study_uid, known)
    except Rejection as rej:
        log.warning("refused STOW-RS part %s: 0x%04X %s", part.path.name, rej.status, rej.comment)
        return PartResult(**known, failure=rej.status, reason=rej.comment)
    except Exception:  # a bug must not read as success nor take the process down
        log.exception("STOW-RS part %s failed unexpectedly", part.path.name)
        return PartResult(**known, failure=statuses.PROCESSING_FAILURE, reason="internal error")


def _store(
    part: SpooledPart,
    storage: Storage,
    sessions: sessionmaker[Session],
    policy: Policy,
    study_uid: str | None,
    known: dict[str, str],
) -> PartResult:
    item, offset = _check(part, policy, study_uid, known)
    meta = file_meta(item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax_uid)
    with storage_rejections():
        stored = None
        if part.file.offset == offset:  # our File Meta is in front already: rename it
            with part.file.reopened() as spooled:
                stored = storage.adopt(spooled, meta, item.study_uid, item.series_uid)
        written = "renamed" if stored is not None else "copied"
        if stored is None:
            stored = storage.store(part.path, offset, meta, item.study_uid, item.series_uid)
    try:
        change = record_instance(sessions, item, stored)
    except SQLAlchemyError as exc:
        log.error(
            "cannot record %s (file kept at %s): %s", item.sop_instance_uid, stored.relpath, exc
        )
        raise Rejection(statuses.PROCESSING_FAILURE, "database unavailable") from None
    log.info(
        "stored %s study %s by STOW-RS: file %s (%s), row %s",
        item.sop_instance_uid,
        item.study_uid,
        stored.outcome,
        written,
        change,
    )
    return PartResult(item.sop_class_uid, item.sop_instance_uid, item.study_uid)


def _check(
    part: SpooledPart, policy: Policy, study_uid: str | None, known: dict[str, str]
) -> tuple[ReceivedInstance, int]:
    """The checks a C-STORE gets, in the same order; the instance and its dataset offset."""
    if part.content_type != DICOM_TYPE:
        raise Rejection(
            statuses.CANNOT_UNDERSTAND_UNDECODABLE,
            f"part is {part.content_type}, not {DICOM_TYPE}",
        )
    meta, offset = _read_meta(part.path)
    sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "").strip()
    instance = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip()
    syntax = str(meta.get("TransferSyntaxUID", "") or "").strip()
    known.update(sop_class_uid=sop_class, sop_instance_uid=instance)
    if syntax not in policy.transfer_syntaxes:
        raise Rejection(TRANSFER_SYNTAX_NOT_SUPPORTED, f"transfer syntax {syntax!r} not accepted")
    if sop_class not in policy.accepted_sop_classes:
        raise Rejection(statuses.SOP_CLASS_NOT_SUPPORTED, f"SOP class {sop_class!r} not accepted")
    try:
        header = read_header(part.path, offset, syntax)
    except MalformedDataset as exc:
        raise Rejection(statuses.CANNOT_UNDERSTAND_UNDECODABLE, str(exc)) from None
    uids = validate_uids(header, sop_class, instance)
    if study_uid is not None and uids["StudyInstanceUID"] != study_uid:
        raise Rejection(STUDY_MISMATCH, "Study Instance UID differs from the request's study")
    return received_instance(uids, syntax, WEB_SOURCE, policy.classifiable_sop_classes), offset


def _read_meta(path: Path):
    """The part's File Meta and where its dataset starts; a Cxxx rejection if it has none."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(PREFIX_LENGTH)
            offset = meta_end(head)
            if offset > MAX_META:
                raise NotPart10(f"File Meta of {offset} bytes is implausibly long")
            fp.seek(0)
            meta = read_meta(fp.read(offset))
    except (NotPart10, ValueError, OSError) as exc:
        raise Rejection(
            statuses.CANNOT_UNDERSTAND_UNDECODABLE, f"not a DICOM Part 10 file: {exc}"
        ) from None
    except Exception as exc:  # pydicom raises many types for an undecodable header
        raise Rejection(
            statuses.CANNOT_UNDERSTAND_UNDECODABLE, f"undecodable File Meta: {exc}"
        ) from None
    return meta, offset
