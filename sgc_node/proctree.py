"""Stop a child process and everything it started, leaving no orphan behind.

Why more than killing the child: `sgc serve` starts its SCP and worker in sessions of their
own, so signalling the child's process group misses them, and a supervisor killed before it
stops its children leaves them running. The tree is read from /proc (Linux) before the child
is asked to stop, and whatever of it is still alive after the grace period is killed.
Each process is identified by (pid, start time), so a pid reused meanwhile is left alone.
``stop_signals`` makes SIGTERM and SIGHUP unwind as Ctrl-C does, so every stop takes that path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of ``pid`` from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(pid: int) -> list[Proc]:
    """Every live process below ``pid`` (children, their children, ...)."""
    parent_of: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parent_of[int(entry.name)] = (st[0], st[1])
    found: list[Proc] = []
    frontier = {pid}
    while frontier:
        kids = {p for p, (ppid, _) in parent_of.items() if ppid in frontier}
        kids -= {p for p, _ in found}
        found.extend((p, parent_of[p][1]) for p in sorted(kids))
        frontier = kids
    return found


def alive(proc: Proc) -> bool:
    """Whether this very process (same pid and start time) still runs (zombies do not)."""
    st = _stat(proc[0])
    return st is not None and st[1] == proc[1] and st[2] != "Z"


def stop_tree(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM ``process``, wait up to ``grace`` s, then SIGKILL it and what is left below it.

    The child gets the chance to stop its own children in order (a supervisor does); the
    tree read before the signal catches those it could not.
    """
    if process.poll() is not None:
        return
    tree = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _wait_gone(tree, 5.0)  # what the child stops on its way out
    for p in tree:
        if alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p[0], signal.SIGKILL)
    _wait_gone(tree, 5.0)  # SIGKILL is delivered asynchronously


def _wait_gone(tree: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.05)


class _Stop(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled as Ctrl-C is."""


@contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into the same unwinding as Ctrl-C, explicitly (a background job
    starts with SIGINT ignored); restore the previous handlers at the end."""

    def _raise(signum, _frame) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise),
        signal.SIGHUP: signal.signal(signal.SIGHUP, _raise),
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
