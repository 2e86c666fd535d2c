"""C-ECHO and C-STORE handlers: validate, store durably, record, then answer.

Why this order: a C-STORE answered 0x0000 lets the sender delete its copy, so success is
returned only after the file is fsync'd in place and its row is committed. Every check
before that is cheap and reads only the dataset's header (the pixel data stays on disk),
and each failure answers the one status that names its cause, with an ErrorComment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom.events import Event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from scp import metrics, statuses
from scp.catalog import ReceivedInstance, record_instance
from scp.encoding import MalformedDataset, check_encoding
from scp.part10 import NotPart10, dataset_offset, file_meta
from scp.spool import lookup, spool_failed
from scp.storage import Storage, StorageFull
from scp.uids import InvalidUID, is_valid_uid

log = logging.getLogger(__name__)

_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


class Rejection(Exception):
    """A C-STORE that cannot be accepted; carries its status and a short reason."""

    def __init__(self, status: int, comment: str, offending: Iterable[str] = ()) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment
        self.offending = [Tag(k) for k in offending]

    def as_dataset(self) -> Dataset:
        ds = Dataset()
        ds.Status = self.status
        # LO: 64 characters of the default repertoire, no backslash (it separates values)
        ds.ErrorComment = "".join(
            c if " " <= c <= "~" and c != "\\" else "?" for c in self.comment
        )[:64]
        if self.offending:
            ds.OffendingElement = self.offending
        return ds


def read_header(path, offset: int, transfer_syntax: str) -> Dataset:
    """Only the UIDs the node needs, stopping before the pixel data."""
    check_encoding(path, offset, transfer_syntax)
    try:
        return dcmread(path, stop_before_pixels=True, specific_tags=list(_REQUIRED_UIDS))
    except Exception as exc:  # pydicom raises many types for undecodable input
        raise MalformedDataset(f"cannot decode the dataset: {exc}") from None


def validate_uids(header: Dataset, context_sop_class: str, command_instance: str) -> dict:
    """The four required UIDs, checked for presence, syntax and agreement with the command."""
    values = {kw: str(header.get(kw, "") or "").strip() for kw in _REQUIRED_UIDS}
    missing = [kw for kw, v in values.items() if not v]
    if missing:
        raise Rejection(
            statuses.CANNOT_UNDERSTAND_MISSING_UID, f"missing {', '.join(missing)}", missing
        )
    invalid = [kw for kw, v in values.items() if not is_valid_uid(v)]
    if invalid:
        raise Rejection(
            statuses.CANNOT_UNDERSTAND_INVALID_UID, f"invalid UID in {', '.join(invalid)}", invalid
        )
    if values["SOPClassUID"] != context_sop_class:
        raise Rejection(
            statuses.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "SOP Class UID differs from the presentation context",
            ["SOPClassUID"],
        )
    if values["SOPInstanceUID"] != command_instance:
        raise Rejection(
            statuses.CANNOT_UNDERSTAND_INSTANCE_MISMATCH,
            "SOP Instance UID differs from Affected SOP Instance UID",
            ["SOPInstanceUID"],
        )
    return values


def received_instance(
    uids: dict, transfer_syntax: str, calling_aet: str, classifiable: frozenset[str]
) -> ReceivedInstance:
    """What the catalog records of one checked instance (``uids`` from :func:`validate_uids`).

    One function for the C-STORE handler and the STOW-RS door, so both record an instance
    the same way: a SOP class outside ``classifiable`` is stored, not classified, and says why.
    """
    sop_class = uids["SOPClassUID"]
    is_classifiable = sop_class in classifiable
    return ReceivedInstance(
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
        calling_aet=calling_aet,
        classifiable=is_classifiable,
        skip_reason=None if is_classifiable else f"SOP class {sop_class} is not mammography",
    )


@contextlib.contextmanager
def storage_rejections() -> Iterator[None]:
    """The storage writer's refusals as the statuses the sender gets (C-STORE and STOW-RS
    alike): a full disk is Out of Resources, a UID unfit for a path cannot be understood."""
    try:
        yield
    except StorageFull as exc:
        raise Rejection(statuses.OUT_OF_RESOURCES, exc.strerror or str(exc)) from None
    except InvalidUID as exc:  # defensive: validate_uids already checked the syntax
        raise Rejection(statuses.CANNOT_UNDERSTAND_INVALID_UID, str(exc)) from None


class StoreHandler:
    """The EVT_C_STORE handler; one instance serves every association of the AE."""

    def __init__(
        self,
        storage: Storage,
        session_factory: sessionmaker[Session],
        classifiable_sop_classes: Iterable[str],
    ) -> None:
        self.storage = storage
        self.session_factory = session_factory
        self.classifiable = frozenset(classifiable_sop_classes)

    def __call__(self, event: Event) -> Dataset | int:
        calling = event.assoc.requestor.ae_title
        command_instance = str(event.request.AffectedSOPInstanceUID or "")
        try:
            status = self._store(event, calling, command_instance)
        except Rejection as rej:
            metrics.C_STORE.labels(f"0x{rej.status:04X}").inc()
            log.warning(
                "refused C-STORE of %s from %s: 0x%04X %s",
                command_instance if is_valid_uid(command_instance) else "<invalid UID>",
                calling,
                rej.status,
                rej.comment,
            )
            return rej.as_dataset()
        except Exception:  # a bug must not read as success nor kill the association
            log.exception("C-STORE of %s failed unexpectedly", command_instance)
            metrics.C_STORE.labels(f"0x{statuses.PROCESSING_FAILURE:04X}").inc()
            return Rejection(statuses.PROCESSING_FAILURE, "internal error").as_dataset()
        metrics.C_STORE.labels(f"0x{status:04X}").inc()
        return status

    def _store(self, event: Event, calling: str, command_instance: str) -> int:
        cx = event.context
        sop_class, transfer_syntax = str(cx.abstract_syntax), str(cx.transfer_syntax)
        path = event.dataset_path
        if spool_failed(path):
            raise Rejection(statuses.OUT_OF_RESOURCES, "no space to receive the dataset")
        try:
            offset = dataset_offset(path)  # pynetdicom's spool file always has a group length
            header = read_header(path, offset, transfer_syntax)
        except (NotPart10, MalformedDataset) as exc:
            raise Rejection(statuses.CANNOT_UNDERSTAND_UNDECODABLE, str(exc)) from None
        uids = validate_uids(header, sop_class, command_instance)
        meta = file_meta(sop_class, uids["SOPInstanceUID"], transfer_syntax, calling)
        study_uid, series_uid = uids["StudyInstanceUID"], uids["SeriesInstanceUID"]
        spooled = lookup(path)
        with storage_rejections():
            stored = None
            if spooled is not None and spooled.offset == offset:
                stored = self.storage.adopt(spooled, meta, study_uid, series_uid)
            written = "renamed" if stored is not None else "copied"
            if stored is None:  # not our spool file, or it cannot be renamed: copy it
                stored = self.storage.store(path, offset, meta, study_uid, series_uid)
        item = received_instance(uids, transfer_syntax, calling, self.classifiable)
        try:
            change = record_instance(self.session_factory, item, stored)
        except SQLAlchemyError as exc:
            log.error(
                "cannot record %s (file kept at %s): %s",
                item.sop_instance_uid,
                stored.relpath,
                type(exc).__name__,
            )
            raise Rejection(statuses.PROCESSING_FAILURE, "database unavailable") from None
        metrics.INSTANCES.labels(str(stored.outcome)).inc()
        metrics.BYTES.inc(stored.size)
        log.info(
            "stored %s study %s from %s: file %s (%s), row %s",
            item.sop_instance_uid,
            item.study_uid,
            calling,
            stored.outcome,
            written,
            change,
        )
        return statuses.SUCCESS


def handle_echo(event: Event) -> int:
    """C-ECHO: the association was accepted, so the node is up."""
    log.debug("C-ECHO from %s", event.assoc.requestor.ae_title)
    return statuses.SUCCESS
