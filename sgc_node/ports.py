"""Loopback ports for processes we start: a configured one checked, 0 replaced by a free one.

Why check before starting anything: a port that is taken shows up late and obscurely (Orthanc
exits with a log line, the SCP's child crash-loops). Checking first turns it into one line
that names the option which moves it, before anything has started that must be stopped.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass


class PortTaken(RuntimeError):
    """A configured port is in use; the message names the setting that moves it."""


@dataclass(frozen=True)
class PortRequest:
    """One port a command needs: what it is for, the asked number (0: any free one), and
    the option or variable a user sets to move it."""

    purpose: str
    port: int
    moved_by: str


def is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now, on any address.

    SO_REUSEADDR as servers set it, so a socket of an earlier run in TIME_WAIT does not count
    as taken; a listener on the port, on the loopback or on all addresses, does.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def resolve_ports(requests: Sequence[PortRequest]) -> list[int]:
    """The port for each request, in order: checked when configured, free when 0.

    Raises :class:`PortTaken` for the first configured port in use (or asked twice).
    """
    chosen: list[int] = []
    for req in requests:
        if req.port and (req.port in chosen or not is_free(req.port)):
            raise PortTaken(
                f"port {req.port} for {req.purpose} is taken: move it with {req.moved_by} "
                "(0 picks a free port)"
            )
        chosen.append(req.port)
    for i, req in enumerate(requests):
        if req.port == 0:
            chosen[i] = _free_port(exclude=chosen)
    return chosen


def _free_port(exclude: Sequence[int]) -> int:
    """A port the kernel hands out as free, not one of ``exclude``."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude and is_free(port):
            return port
