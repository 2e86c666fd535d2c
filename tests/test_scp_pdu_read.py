"""The node's DUL (scp/transport.py): the PDU read and the readiness wait.

What must hold: a whole PDU gives pynetdicom's event and a PDU equal to pynetdicom's
decode; every way a read can fail gives the event pynetdicom's own read gives (Evt17: the
connection closed mid-PDU; Evt19: an unknown type or a PDU that does not decode), and
nothing half-read reaches the state machine. The wait for data never holds back an event
already queued: an association is accepted without waiting out DUL_WAIT.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.pdu import A_RELEASE_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

from scp.transport import BulkRecvSocket, NodeDUL


def _p_data_tf(size: int) -> bytes:
    primitive = P_DATA()
    primitive.presentation_data_value_list = [[1, b"\x02" + os.urandom(size)]]
    return P_DATA_TF(primitive).encode()


def _read(sent: bytes) -> tuple[list[str], list[object]]:
    """Send ``sent`` (then close) to a NodeDUL's socket; its queued events and PDUs."""
    ours, theirs = socket.socketpair()
    dul = Association(AE(), "acceptor").dul
    dul.__class__ = NodeDUL
    sock = AssociationSocket(dul.assoc, client_socket=ours)
    sock.__class__ = BulkRecvSocket
    dul.socket = sock
    dul.event_queue.get()  # Evt5, the connection itself
    writer = threading.Thread(target=lambda: (theirs.sendall(sent), theirs.close()))
    writer.start()
    dul._read_pdu_data()
    writer.join()
    ours.close()
    events = list(dul.event_queue.queue)
    return events, list(dul._recv_pdu.queue)


def test_a_whole_p_data_pdu_is_read_into_one_buffer() -> None:
    encoded = _p_data_tf(300_000)  # several recv calls on a socket pair
    events, pdus = _read(encoded)
    assert events == ["Evt10"]
    theirs = P_DATA_TF()
    theirs.decode(encoded)
    (pdu,) = pdus
    got = [
        (i.presentation_context_id, bytes(i.presentation_data_value))
        for i in pdu.presentation_data_value_items  # type: ignore[attr-defined]
    ]
    want = [
        (i.presentation_context_id, i.presentation_data_value)
        for i in theirs.presentation_data_value_items
    ]
    assert got == want
    primitive = pdu.to_primitive()  # type: ignore[attr-defined]
    assert [(c, bytes(d)) for c, d in primitive.presentation_data_value_list] == [
        (c, d) for c, d in theirs.to_primitive().presentation_data_value_list
    ]


def test_other_pdus_are_read_too() -> None:
    events, pdus = _read(A_RELEASE_RQ().encode())
    assert events == ["Evt12"] and isinstance(pdus[0], A_RELEASE_RQ)


@pytest.mark.parametrize(
    ("sent", "event"),
    [
        (b"\x04\x00\x00", "Evt17"),  # the header itself cut short
        (_p_data_tf(1000)[:700], "Evt17"),  # the body cut short
        (b"", "Evt17"),  # closed before anything
        (b"\x09\x00\x00\x00\x00\x04abcd", "Evt19"),  # no such PDU type
        (b"\x01\x00\x00\x00\x00\x04abcd", "Evt19"),  # an A-ASSOCIATE-RQ that does not decode
    ],
    ids=["short-header", "short-body", "closed", "unknown-type", "undecodable"],
)
def test_failed_reads_give_pynetdicoms_events_and_no_pdu(sent: bytes, event: str) -> None:
    events, pdus = _read(sent)
    assert events == [event]
    assert pdus == []


def test_associations_are_accepted_and_released_without_waiting_out_a_poll(tmp_path) -> None:
    """The A-ASSOCIATE-RQ is queued behind the connection's own event; a DUL that waited
    for more data first took DUL_WAIT (50 ms) to accept every association. A release
    request must wake the association reactor, not wait for its next look (REACTOR_WAIT):
    timed in the node, from the A-RELEASE-RQ's arrival to the A-RELEASE-RP's departure."""
    import statistics
    import time

    from pynetdicom import evt
    from pynetdicom.pdu import A_RELEASE_RP
    from pynetdicom.sop_class import Verification

    from scp.transport import DUL_WAIT, REACTOR_WAIT
    from tests.helpers.scpnode import node_settings, running_node

    arrived: dict[object, float] = {}  # keyed by the association itself: ids get reused
    answered: dict[object, float] = {}

    def on_recv(event) -> None:  # noqa: ANN001
        if isinstance(event.pdu, A_RELEASE_RQ):
            arrived[event.assoc] = time.perf_counter()

    def on_sent(event) -> None:  # noqa: ANN001
        if isinstance(event.pdu, A_RELEASE_RP):
            answered[event.assoc] = time.perf_counter()

    settings = node_settings(tmp_path, f"sqlite:///{tmp_path / 'n.db'}")
    with running_node(settings, sweeper=False) as node:
        assert node.server is not None
        node.server.bind(evt.EVT_PDU_RECV, on_recv)
        node.server.bind(evt.EVT_PDU_SENT, on_sent)
        ae = AE(ae_title="ECHOSCU")
        ae.add_requested_context(Verification)
        accepts = []
        for _ in range(11):
            start = time.perf_counter()
            assoc = ae.associate(*node.address, ae_title="SGC_NODE")
            accepts.append(time.perf_counter() - start)
            assert assoc.is_established
            assoc.release()
            assert assoc.is_released
    assert sum(accepts[1:]) < 10 * DUL_WAIT / 2, f"10 accepts took {sum(accepts[1:]):.3f} s"
    releases = [answered[k] - arrived[k] for k in arrived]
    assert len(releases) == 11
    assert statistics.median(releases) < REACTOR_WAIT / 2, f"releases took {releases}"
