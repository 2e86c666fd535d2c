"""Run the node's processes (SCP, worker) as children and stop them together.

Why a supervisor and not threads: the SCP must never import torch and the worker loads the
model once per process, so `sgc serve` starts them as separate processes. One Ctrl-C (SIGINT)
or SIGTERM stops all of them cleanly; if one dies, the others are stopped too, so no orphan
worker is left behind. Work in flight is in the database and resumes on the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None  # overrides on top of the supervisor's environment
    proc: subprocess.Popen | None = None


def run_children(children: Sequence[Child], env: dict[str, str], grace: float = 30.0) -> int:
    """Start every child, wait until one exits or we are told to stop; return an exit status."""
    stopping = False

    def _stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        log.info("received %s, stopping", signal.Signals(signum).name)

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            # Own process group: a terminal's Ctrl-C reaches only us, and we stop each child once.
            child.proc = subprocess.Popen(
                child.argv, env={**env, **(child.env or {})}, start_new_session=True
            )
            log.info("started %s (pid %d)", child.name, child.proc.pid)
        status = 0
        while not stopping:
            for child in children:
                code = child.proc.poll() if child.proc else 0
                if code is not None:
                    log.error("%s exited with status %s; stopping the node", child.name, code)
                    status = code or 1
                    stopping = True
                    break
            time.sleep(0.2)
        _terminate(children, grace)
        return status
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
