"""The node's association server: pynetdicom's, with a bulk socket read and SO_REUSEPORT.

Why: pynetdicom 3.0.4 reads every PDU with a Python loop of 4096-byte ``recv`` calls, each
appended to a growing ``bytearray``: about 250 calls per 1 MiB P-DATA PDU, 4,000 per 17 MB
mammogram, all holding the GIL. :class:`BulkRecvSocket` reads a PDU with ``recv_into`` into
one buffer of its final size (a handful of calls, no re-copying). :class:`NodeServer` can
also bind with ``SO_REUSEPORT`` so that several SCP processes share one port and the kernel
spreads associations across them (scp/server.py), the way ``storescp --fork`` spreads them
over processes, instead of one process's GIL serialising all receive threads.

Both hook in through pynetdicom's documented extension points (``AE.make_server`` with a
``server_class`` and a ``request_handler``); the socket is pynetdicom's own class with one
method replaced.
"""

from __future__ import annotations

import socket

from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer


class BulkRecvSocket(AssociationSocket):
    """An :class:`AssociationSocket` that reads ``nr_bytes`` in as few system calls as it can."""

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly ``nr_bytes``, or what arrived before the peer closed (like pynetdicom)."""
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        got = 0
        sock = self.socket
        assert sock is not None
        while got < nr_bytes:
            n = sock.recv_into(view[got:], nr_bytes - got)
            if not n:  # connection closed: the caller sees a short read
                del view
                return buffer[:got]
            got += n
        return buffer


class NodeRequestHandler(RequestHandler):
    """pynetdicom's handler, its association reading through :class:`BulkRecvSocket`."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        sock = assoc.dul.socket
        if type(sock) is AssociationSocket:  # the class whose recv is replaced, nothing else
            sock.__class__ = BulkRecvSocket
        return assoc


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
