"""Run the node's processes (SCP, worker, STOW-RS door) as children, restart the ones that die,
stop them together.

Why a supervisor and not threads: the SCP and the door must never import torch and the worker
loads the model once per process, so `sgc serve` starts them as separate processes.

Why restart instead of stopping the node: the embedded default is what a new user runs, often
unattended; one worker that dies (killed, out of memory, a broker hiccup) must not leave
studies waiting for a person. A child that exits unexpectedly is started again after a delay
that doubles with each quick exit (:data:`RESTART_DELAY_FIRST` up to
:data:`RESTART_DELAY_MAX`). Only a crash loop (:data:`CRASH_LOOP_EXITS` exits of one child
within :data:`CRASH_LOOP_WINDOW` seconds) stops the node, with a one-line reason and a non-zero
status: restarting something that cannot start only hides the cause. Work in flight is in the
database and resumes when the child is back.

SIGINT (Ctrl-C) or SIGTERM stops all children. The handlers are installed explicitly, because
a shell starts a background job (``sgc serve &``) with SIGINT ignored and Python then leaves it
ignored; the children, each in its own process group, are stopped with SIGTERM, then SIGKILL
after ``grace`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Seconds before restarting a child after its first exit (the delay doubles per quick exit).
RESTART_DELAY_FIRST = 1.0

#: The longest delay, in seconds, before restarting a child that keeps exiting.
RESTART_DELAY_MAX = 30.0

#: This many exits of one child ...
CRASH_LOOP_EXITS = 5

#: ... within this many seconds are a crash loop: the node stops. A child that stayed up this
#: long is healthy again: its restart delay starts over at RESTART_DELAY_FIRST.
CRASH_LOOP_WINDOW = 60.0


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that exited is restarted, and when its exits are a crash loop."""

    first_delay: float = RESTART_DELAY_FIRST
    max_delay: float = RESTART_DELAY_MAX
    loop_exits: int = CRASH_LOOP_EXITS
    loop_window: float = CRASH_LOOP_WINDOW

    def delay(self, quick_exits: int) -> float:
        """The wait before the restart that follows ``quick_exits`` (>= 1) quick exits."""
        return min(self.max_delay, self.first_delay * 2.0 ** max(0, quick_exits - 1))


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None  # overrides on top of the supervisor's environment
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    exits: deque = field(default_factory=deque)  # monotonic times of recent exits
    quick_exits: int = 0  # exits in a row, each after less than the crash-loop window up
    restart_at: float | None = None  # when a child that exited is due to start again


@dataclass
class Outcome:
    """How the supervisor ended: status 0 when told to stop, non-zero with a reason otherwise."""

    status: int
    reason: str | None = None


def run_children(
    children: Sequence[Child],
    env: dict[str, str],
    grace: float = 30.0,
    policy: RestartPolicy | None = None,
) -> Outcome:
    """Start every child and keep them running until told to stop or one crash-loops."""
    policy = policy or RestartPolicy()
    stop: list[int] = []

    def _stop(signum, _frame) -> None:
        if not stop:
            log.info("received %s, stopping", signal.Signals(signum).name)
        stop.append(signum)

    # Explicitly, whatever the disposition at start (SIG_IGN in a background job).
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            _start(child, env)
        reason = None
        while not stop and reason is None:
            for child in children:
                reason = _tend(child, env, policy, time.monotonic())
                if reason or stop:
                    break
            time.sleep(0.2)
        if reason:
            log.error("stopping the node: %s", reason)
        _terminate(children, grace)
        return Outcome(1, reason) if reason else Outcome(0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _start(child: Child, env: dict[str, str]) -> None:
    # Own process group: a terminal's Ctrl-C reaches only us, and we stop each child once.
    child.proc = subprocess.Popen(
        child.argv, env={**env, **(child.env or {})}, start_new_session=True
    )
    child.started_at = time.monotonic()
    child.restart_at = None
    log.info("started %s (pid %d)", child.name, child.proc.pid)


def _tend(child: Child, env: dict[str, str], policy: RestartPolicy, now: float) -> str | None:
    """Notice an exit, restart when due; return a reason to stop the node, or None."""
    if child.restart_at is not None:
        if now >= child.restart_at:
            _start(child, env)
        return None
    code = child.proc.poll() if child.proc else None
    if code is None:
        return None
    _signal_group(child, signal.SIGKILL)  # what the child left in its group goes with it
    child.exits.append(now)
    while child.exits and now - child.exits[0] > policy.loop_window:
        child.exits.popleft()
    if len(child.exits) >= policy.loop_exits:
        return (
            f"{child.name} exited {len(child.exits)} times within {policy.loop_window:g} s "
            f"(last status {code}); see its log above"
        )
    up = now - child.started_at
    child.quick_exits = child.quick_exits + 1 if up < policy.loop_window else 1
    delay = policy.delay(child.quick_exits)
    child.restart_at = now + delay
    log.warning(
        "%s (pid %d) exited with status %s after %.1f s; restarting in %g s",
        child.name, child.proc.pid, code, up, delay,
    )  # fmt: skip
    return None


def _terminate(children: Sequence[Child], grace: float) -> None:
    alive = [c for c in children if c.proc and c.proc.poll() is None]
    for child in alive:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in alive:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.proc.wait(remaining)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", child.name, grace)
            _signal_group(child, signal.SIGKILL)
            child.proc.wait()
        log.info("%s stopped (status %s)", child.name, child.proc.returncode)
    # Anything left in a child's process group (e.g. a pool process) goes too.
    for child in children:
        if child.proc:
            _signal_group(child, signal.SIGKILL)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, sig)


def sgc_argv(*args: str) -> list[str]:
    """The argv that runs `sgc ARGS` with the same interpreter as this process."""
    return [sys.executable, "-m", "sgc_node", *args]
