"""The node's association server: pynetdicom's, with a bulk socket read, waits instead of
1 ms polling, and SO_REUSEPORT.

Why: pynetdicom 3.0.4 reads every PDU with a Python loop of 4096-byte ``recv`` calls, each
appended to a growing ``bytearray``: about 250 calls per 1 MiB P-DATA PDU, 4,000 per 17 MB
mammogram, all holding the GIL. :class:`BulkRecvSocket` reads a PDU with ``recv_into`` into
one buffer of its final size (a handful of calls, no re-copying). :class:`NodeServer` can
also bind with ``SO_REUSEPORT`` so that several SCP processes share one port and the kernel
spreads associations across them (scp/server.py), the way ``storescp --fork`` spreads them
over processes, instead of one process's GIL serialising all receive threads.

Each association runs two pynetdicom threads that poll every millisecond: the DUL reactor
(is there socket data or a primitive to send?) and the association reactor (is there a DIMSE
message?). Eight idle associations cost 26 % of a core in one process here, and every
wake-up competes for the GIL with the threads that are receiving. :class:`NodeDUL` and
:class:`BulkRecvSocket` instead wait in ``select`` on the socket and on a wake-up socket pair
that a queued primitive (a C-STORE response, a release) signals, and :class:`WaitingDIMSE`
lets the association reactor wait until a DIMSE message or a primitive from the DUL (a
release or abort request) arrives; both still wake at least every :data:`DUL_WAIT` /
:data:`REACTOR_WAIT` seconds for timers and state changes they are not told about.

All of it hooks in through pynetdicom's documented extension points (``AE.make_server`` with a
``server_class`` and a ``request_handler``); the socket, DUL and DIMSE objects
are pynetdicom's own, their class swapped for a subclass before the association starts.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import threading

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

# Longest wait of an idle DUL reactor in select (it wakes at once for data or a primitive).
DUL_WAIT = 0.05
_P_DATA_TF = 0x04
_P_DATA_TF_EVENT = "Evt10"  # PS3.8 9.2: P-DATA-TF PDU received
_CONNECTION_CLOSED = "Evt17"  # PS3.8 9.2: transport connection closed
_INVALID_PDU = "Evt19"  # PS3.8 9.2: unrecognised or invalid PDU received
_PDU_TYPES = frozenset(range(0x01, 0x08))  # PS3.8 9.3: A-ASSOCIATE-RQ ... A-ABORT
LOGGER = logging.getLogger("pynetdicom.dul")  # where pynetdicom reports the same failures
# Longest wait of the association reactor for a DIMSE message (release/abort checks).
REACTOR_WAIT = 0.01


class BulkRecvSocket(AssociationSocket):
    """An :class:`AssociationSocket` that reads ``nr_bytes`` in as few system calls as it can,
    and whose readiness check waits for data or a wake-up instead of returning at once."""

    _wake_r: socket.socket | None = None
    _wake_w: socket.socket | None = None

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly ``nr_bytes``, or what arrived before the peer closed (like pynetdicom)."""
        buffer = bytearray(nr_bytes)
        got = self.recv_exactly(memoryview(buffer))
        return buffer if got == nr_bytes else buffer[:got]

    def recv_exactly(self, view: memoryview) -> int:
        """Fill ``view``; returns how many bytes arrived (fewer: the peer closed)."""
        got, wanted = 0, len(view)
        sock = self.socket
        assert sock is not None
        while got < wanted:
            n = sock.recv_into(view[got:], wanted - got)
            if not n:
                break
            got += n
        view.release()
        return got

    def open_wake(self) -> None:
        """The socket pair :meth:`wake` writes to; closed with the connection."""
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def wake(self) -> None:
        """End a :meth:`ready` wait now (something was queued for the DUL to do)."""
        try:
            if self._wake_w is not None:
                self._wake_w.send(b"\0")
        except OSError:  # closed, or a wake-up already pending (buffer full): either is fine
            pass

    @property
    def ready(self) -> bool:
        """Like pynetdicom's, but wait up to :data:`DUL_WAIT` for data or a wake-up, unless
        the DUL has events still to handle.

        Why not always wait: the reactor handles one event per turn, and an event can be
        queued behind another (the A-ASSOCIATE-RQ behind the connection's own Evt5); a wait
        here would hold it back until data came or DUL_WAIT ran out, and the peer sends
        nothing while it waits for the answer: each association took DUL_WAIT to accept.
        """
        sock = self.socket
        if sock is None or self._is_connected is False or self._wake_r is None:
            return super().ready
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        wait = 0.0 if self.event_queue.qsize() else DUL_WAIT
        try:
            ready, _, _ = select.select([sock, self._wake_r], [], [], wait)
        except (OSError, ValueError):
            return super().ready  # pynetdicom's own check reports the closed connection
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
        return sock in ready

    def close(self) -> None:
        super().close()
        for end in (self._wake_r, self._wake_w):
            if end is not None:
                end.close()


class ViewPDataTF(P_DATA_TF):
    """A received P-DATA-TF whose PDV values are views of its buffer (NodeDUL._decode_pdu)."""

    def to_primitive(self) -> P_DATA:
        """As pynetdicom's, without its per-call ``import`` (a tenth of the per-PDU path)."""
        primitive = P_DATA()
        primitive.presentation_data_value_list.extend(
            (item.presentation_context_id, item.presentation_data_value)  # type: ignore[misc]
            for item in self.presentation_data_value_items
        )
        return primitive


class NodeDUL(DULServiceProvider):
    """The DUL reactor, woken when a primitive is queued or it is told to stop, reading each
    PDU into one buffer and decoding P-DATA-TF PDUs without copying their data."""

    def _read_pdu_data(self) -> None:
        """Read one PDU into a buffer of its final size and queue its event and PDU.

        PS3.8 9.3.1: every PDU starts with its type, a reserved byte and a 4-byte length.
        Why not pynetdicom's: it reads the body into a second buffer and appends that to
        the header's, one more copy (and allocation) of every received byte. The events are
        the same: Evt17 when the connection closes mid-PDU, Evt19 for an unknown type or a
        PDU that does not decode.
        """
        sock = self.socket
        if not isinstance(sock, BulkRecvSocket):
            return super()._read_pdu_data()
        try:
            header = sock.recv(6)
        except (OSError, TimeoutError):
            header = b""
        if len(header) < 6:
            self.event_queue.put(_CONNECTION_CLOSED)
            return None
        if header[0] not in _PDU_TYPES:
            LOGGER.error("Unknown PDU type received '0x%02X'", header[0])
            self.event_queue.put(_INVALID_PDU)
            return None
        length = int.from_bytes(header[2:6], "big")
        buffer = bytearray(6 + length)
        buffer[:6] = header
        try:
            got = sock.recv_exactly(memoryview(buffer)[6:])
        except (OSError, TimeoutError):
            got = -1
        if got != length:
            LOGGER.error("The connection closed before the whole PDU was received")
            self.event_queue.put(_CONNECTION_CLOSED)
            return None
        try:
            pdu, event = self._decode_pdu(buffer)
        except Exception:
            LOGGER.exception("Unable to decode the received PDU")
            self.event_queue.put(_INVALID_PDU)
            return None
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)
        return None

    def _decode_pdu(self, bytestream: bytearray):  # noqa: ANN202 (pynetdicom's PDU union)
        """P-DATA-TF: each PDV's value is a view of the received buffer, not a copy.

        pynetdicom copies every data byte three times here (``bytes(bytestream)``, the
        items' slice, each PDV's slice) before the DIMSE layer slices it once more
        (``data[1:]``, a view too when the value is one) and writes it to the spool file.
        Other PDUs, and any P-DATA-TF whose item lengths do not add up, go to pynetdicom.
        """
        if not bytestream or bytestream[0] != _P_DATA_TF:
            return super()._decode_pdu(bytestream)
        view = memoryview(bytestream)
        items = []
        offset, end = 6, len(bytestream)
        while offset < end:
            if end - offset < 5:
                return super()._decode_pdu(bytestream)
            length = int.from_bytes(view[offset : offset + 4], "big")
            if length < 1 or offset + 4 + length > end:
                return super()._decode_pdu(bytestream)
            item = PresentationDataValueItem()
            item.presentation_context_id = view[offset + 4]
            item.presentation_data_value = view[offset + 5 : offset + 4 + length]  # type: ignore[assignment]
            items.append(item)
            offset += 4 + length
        if self.assoc.get_handlers(evt.EVT_DATA_RECV):
            evt.trigger(self.assoc, evt.EVT_DATA_RECV, {"data": bytes(bytestream)})
        pdu = ViewPDataTF()
        pdu.presentation_data_value_items = items
        evt.trigger(self.assoc, evt.EVT_PDU_RECV, {"pdu": pdu})
        return pdu, _P_DATA_TF_EVENT

    def send_pdu(self, primitive) -> None:  # noqa: ANN001 (pynetdicom's primitive union)
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def _wake(self) -> None:
        sock = self.socket
        if isinstance(sock, BulkRecvSocket):
            sock.wake()


class SignallingQueue(queue.Queue):
    """A queue whose every put also sets ``activity``, the association reactor's wake-up."""

    activity: threading.Event

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:  # noqa: ANN001
        super().put(item, block, timeout)
        self.activity.set()


class WaitingDIMSE(DIMSEServiceProvider):
    """``get_msg(block=False)`` (the association reactor's poll) waits up to REACTOR_WAIT for
    a DIMSE message or for a primitive the DUL hands up (a release or abort request).

    Why both: between its waits the reactor also checks for a release request; waiting on
    the message queue alone made every A-RELEASE wait out REACTOR_WAIT (11 ms of each
    association's life, where dcmtk takes 2.5 ms).
    """

    activity: threading.Event | None = None

    def get_msg(self, block: bool = False):  # noqa: ANN201 (pynetdicom's queue item)
        if block:
            return super().get_msg(block=True)
        if self.activity is None:
            try:
                return self.msg_queue.get(timeout=REACTOR_WAIT)
            except queue.Empty:
                return None, None
        try:
            return self.msg_queue.get_nowait()
        except queue.Empty:
            pass
        self.activity.wait(REACTOR_WAIT)
        self.activity.clear()  # a put after this sets it again: no wake-up is lost
        try:
            return self.msg_queue.get_nowait()
        except queue.Empty:
            return None, None


class NodeRequestHandler(RequestHandler):
    """pynetdicom's handler; its association waits instead of polling (see the module)."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        sock = assoc.dul.socket
        if type(sock) is AssociationSocket:  # the class whose methods are replaced, nothing else
            sock.__class__ = BulkRecvSocket
            sock.open_wake()
            if type(assoc.dul) is DULServiceProvider:
                assoc.dul.__class__ = NodeDUL
            if type(assoc.dimse) is DIMSEServiceProvider:
                assoc.dimse.__class__ = WaitingDIMSE
                _signal_activity(assoc)
        return assoc


def _signal_activity(assoc: Association) -> None:
    """Make the DIMSE message queue and the DUL's queue for the user wake the reactor."""
    queues = (assoc.dul.to_user_queue, assoc.dimse.msg_queue)
    if all(type(q) is queue.Queue for q in queues):
        activity = threading.Event()
        for q in queues:
            q.__class__ = SignallingQueue
            q.activity = activity  # type: ignore[attr-defined]
        assoc.dimse.activity = activity  # type: ignore[attr-defined]


class NodeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server; binds with ``SO_REUSEPORT`` when ``reuse_port`` is set."""

    reuse_port = False

    def server_bind(self) -> None:
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def reuse_port_server(enabled: bool) -> type[NodeServer]:
    """A :class:`NodeServer` subclass with ``reuse_port`` fixed (pynetdicom builds the server)."""
    return type("NodeServer", (NodeServer,), {"reuse_port": enabled})
