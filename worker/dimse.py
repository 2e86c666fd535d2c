"""The node's one C-STORE sender: SR delivery (worker/deliver.py) and `sgc send` both use it.

Why one: two senders had drifted apart (0x0001 counted as stored in one only). Here one set
of statuses means "stored", one way to propose contexts, one TLS setup and one set of
timeouts serve both.

What counts as stored (:data:`STORED_STATUSES`): Success 0x0000 and the warnings, after
which the SCP has stored the instance, possibly changed (PS3.4 B.2.3: 0xB000 coercion of
data elements, 0xB007 data set does not match SOP class, 0xB006 elements discarded; PS3.7
C.1.2: 0x0001 is the general warning). Any other status, or none, is a failure whose
message names the status and the peer's ErrorComment.

Files are sent as they are on disk (pynetdicom streams the encoded dataset, no decode); an
uncompressed file whose syntax the peer declines goes in Implicit VR Little Endian, the
syntax every SCP must accept (PS3.5 10.1), re-encoded from the decoded dataset.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from sgc_config.settings import RemoteNode

log = logging.getLogger(__name__)

STORED_STATUSES = frozenset({0x0000, 0x0001, 0xB000, 0xB006, 0xB007})
ACSE_TIMEOUT = 30.0
DIMSE_TIMEOUT = 120.0
NETWORK_TIMEOUT = 60.0
MAX_CONTEXTS = 128  # PS3.8: at most 128 presentation contexts per association
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True)
class StoreOutcome:
    """What one C-STORE got: the DIMSE status (None if none came back) and why it failed."""

    status: int | None
    error: str | None = None

    @property
    def stored(self) -> bool:
        return self.status in STORED_STATUSES


@dataclass(frozen=True)
class TlsClient:
    """TLS for an outbound link: the CA bundle that signed the peer, our optional cert/key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the peer's certificate and its host name."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return ctx


def file_header(path: Path) -> tuple[str, str] | None:
    """(SOP Class UID, transfer syntax) of a Part 10 file; None when it is not one."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        return str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, OSError, ValueError):
        return None


def store_files(
    files: Sequence[tuple[Path, tuple[str, str]]],
    node: RemoteNode,
    calling_aet: str,
    tls: TlsClient | None = None,
    on_outcome: Callable[[Path, StoreOutcome], None] | None = None,
) -> list[StoreOutcome]:
    """C-STORE each ``(path, (sop_class, syntax))`` to ``node``, one outcome per file.

    One association carries them all; a new one is opened only when the peer aborted.
    Raises ValueError for more (SOP class, syntax) pairs than one association can propose.
    """
    ae = _make_ae(calling_aet, {h for _, h in files})
    tls_args = (tls.context(), node.host) if tls else None
    outcomes: list[StoreOutcome] = []
    assoc = None
    try:
        for index, (path, header) in enumerate(files):
            if assoc is None or not assoc.is_established:
                assoc, why = _associate(ae, node, tls_args)
                if assoc is None:
                    for rest, _ in files[index:]:
                        outcomes.append(StoreOutcome(None, why))
                        if on_outcome:
                            on_outcome(rest, outcomes[-1])
                    break
            outcomes.append(_store_one(assoc, path, header, node))
            if on_outcome:
                on_outcome(path, outcomes[-1])
    finally:
        if assoc is not None and assoc.is_established:
            assoc.release()
    return outcomes


def store_file(
    path: Path, node: RemoteNode, calling_aet: str, tls: TlsClient | None = None
) -> StoreOutcome:
    """C-STORE one file (an SR) in an association of its own."""
    header = file_header(path)
    if header is None:
        return StoreOutcome(None, f"{path} is not a DICOM Part 10 file")
    return store_files([(path, header)], node, calling_aet, tls)[0]


def _make_ae(calling_aet: str, headers: set[tuple[str, str]]) -> AE:
    """One context per (SOP class, syntax) found; an uncompressed one offers the other too.

    Separate contexts, because an SCP accepts one syntax per context: a study with both
    uncompressed and JPEG 2000 images needs a context for each.
    """
    if len(headers) > MAX_CONTEXTS:
        raise ValueError(
            f"more than {MAX_CONTEXTS} SOP class and transfer syntax pairs in one send; "
            "split the input"
        )
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ACSE_TIMEOUT
    ae.dimse_timeout = DIMSE_TIMEOUT
    ae.network_timeout = NETWORK_TIMEOUT
    for sop_class, syntax in sorted(headers):
        fallbacks = [s for s in _UNCOMPRESSED if s != syntax] if syntax in _UNCOMPRESSED else []
        ae.add_requested_context(sop_class, [syntax, *fallbacks])
    return ae


def _associate(ae: AE, node: RemoteNode, tls_args):
    """(association, None) or (None, why it could not be made)."""
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=tls_args)
    except (OSError, ssl.SSLError) as exc:
        return None, f"cannot connect to {node}: {exc}"
    if assoc.is_established:
        return assoc, None
    if assoc.is_rejected:
        return None, f"{node} rejected the association"
    secure = " (TLS handshake failed?)" if tls_args else ""
    return None, f"no association with {node}: refused, aborted or timed out{secure}"


def _store_one(assoc, path: Path, header: tuple[str, str], node: RemoteNode) -> StoreOutcome:
    sop_class, syntax = header
    try:
        try:
            rsp = assoc.send_c_store(path)
        except ValueError:  # no accepted context in the file's own syntax
            if syntax not in _UNCOMPRESSED:
                raise
            rsp = assoc.send_c_store(dcmread(path))  # pynetdicom re-encodes uncompressed
    except (ValueError, RuntimeError) as exc:
        return StoreOutcome(None, f"{node} accepts no context for {sop_class} in {syntax}: {exc}")
    status = rsp.get("Status") if rsp else None
    if status is None:
        return StoreOutcome(None, f"{node} sent no C-STORE response (association lost)")
    status = int(status)
    if status in STORED_STATUSES:
        return StoreOutcome(status)
    comment = str(rsp.get("ErrorComment", "") or "")
    return StoreOutcome(
        status, f"{node} answered C-STORE status 0x{status:04X}{': ' + comment if comment else ''}"
    )
