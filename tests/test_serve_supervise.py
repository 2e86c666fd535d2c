"""`sgc serve` supervises: a dead child comes back, only a crash loop stops the node, and
SIGINT/SIGTERM stop every child, also when SIGINT was ignored at start (a background job).

The node runs as real processes (`sgc serve`, its `sgc scp` and `sgc worker` children); the
children are killed with real signals and the node is asked with dcmtk echoscu (C-ECHO).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sgc_node.supervise import Child, RestartPolicy, run_children
from tests.conftest import free_port, require_binary
from tests.helpers.nodeproc import NodeProcesses, children_of, port_open, wait_until

#: The command lines of `sgc serve`'s two workers (a classify one and a deliver one).
CLASSIFY, DELIVER = "worker --queues classify ", "worker --queues deliver "


def _child(pid: int, role: str) -> int | None:
    """The pid of the `sgc ROLE` child of ``pid`` (None while there is none)."""
    pids = [p for p, cmd in children_of(pid).items() if f"sgc_node {role}" in cmd]
    return pids[0] if len(pids) == 1 else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _echo(port: int) -> int:
    cmd = [require_binary("echoscu"), "-aec", "SGC_NODE", "127.0.0.1", str(port)]
    return subprocess.run(cmd, capture_output=True, timeout=60).returncode


def _node(tmp_path: Path, **settings: object) -> NodeProcesses:
    return NodeProcesses.create(tmp_path / "node", port=free_port(), **settings)


def test_restart_delay_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_crash_loop_stops_with_a_one_line_reason(caplog: pytest.LogCaptureFixture) -> None:
    crasher = Child("crasher", [sys.executable, "-c", "import sys; sys.exit(3)"])
    policy = RestartPolicy(first_delay=0.05, max_delay=0.2, loop_exits=3, loop_window=30)
    with caplog.at_level(logging.INFO, logger="sgc_node.supervise"):
        outcome = run_children([crasher], dict(os.environ), grace=5, policy=policy)
    assert outcome.status == 1
    assert outcome.reason == "crasher exited 3 times within 30 s (last status 3); see its log above"
    assert "\n" not in outcome.reason
    assert caplog.text.count("exited with status 3") == 2  # two restarts before the third exit
    assert "restarting in 0.05 s" in caplog.text and "restarting in 0.1 s" in caplog.text


def test_sigkilled_children_are_restarted_and_sigterm_stops_all(
    tmp_path: Path, tiny_model: Path
) -> None:
    node = _node(tmp_path, model=tiny_model, device="cpu")
    try:
        serve = node.start("serve", "serve")
        wait_until(lambda: port_open(node.port), "sgc serve to listen", 90, [serve])
        scp = wait_until(lambda: _child(serve.pid, "scp"), "the scp child", 30, [serve])
        worker = wait_until(lambda: _child(serve.pid, CLASSIFY), "the worker", 30, [serve])
        deliver = wait_until(lambda: _child(serve.pid, DELIVER), "the deliver worker", 30, [serve])
        for old in (worker, scp):
            os.kill(old, signal.SIGKILL)
        new_scp = wait_until(
            lambda: (p := _child(serve.pid, "scp")) not in (None, scp) and p, "a new scp", 60,
            [serve],
        )  # fmt: skip
        new_worker = wait_until(
            lambda: (p := _child(serve.pid, CLASSIFY)) not in (None, worker) and p,
            "a new worker", 60, [serve],
        )  # fmt: skip
        wait_until(lambda: port_open(node.port), "the new scp to listen", 90, [serve])
        assert _echo(node.port) == 0, node.logs()
        assert serve.poll() is None
        log = node.log_path("serve").read_text()
        assert "exited with status -9" in log and "restarting in 1 s" in log
        assert _child(serve.pid, DELIVER) == deliver  # untouched by its neighbours' restarts
        family = set(children_of(new_scp)) | set(children_of(new_worker)) | {new_scp, new_worker}
        family |= set(children_of(deliver)) | {deliver}
        os.kill(serve.pid, signal.SIGTERM)
        assert serve.wait(60) == 0
        assert [p for p in family if _alive(p)] == []
    except BaseException:
        print(node.logs())
        raise
    finally:
        node.stop_all()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_all_children_even_with_sigint_ignored_at_start(
    tmp_path: Path, sig: signal.Signals
) -> None:
    node = _node(tmp_path)

    def _background_job() -> None:  # what a shell does for `sgc serve &`
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.setsid()

    with open(node.log_path("serve"), "ab") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "sgc_node", "serve", "--no-worker"],
            env=node.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_background_job,
        )  # fmt: skip
    node.procs["serve"] = serve
    try:
        wait_until(lambda: port_open(node.port), "sgc serve to listen", 90, [serve])
        scp = wait_until(lambda: _child(serve.pid, "scp"), "the scp child", 30, [serve])
        os.kill(serve.pid, sig)
        assert serve.wait(60) == 0, node.logs()
        assert not _alive(scp) and not port_open(node.port)
        assert f"received {sig.name}, stopping" in node.log_path("serve").read_text()
    except BaseException:
        print(node.logs())
        raise
    finally:
        node.stop_all()


def test_a_child_that_cannot_start_stops_the_node_with_its_reason(tmp_path: Path) -> None:
    node = _node(tmp_path)
    with socket.socket() as taken:  # the SCP's port is held: every start fails at once
        taken.bind(("127.0.0.1", node.port))
        taken.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "sgc_node", "serve", "--no-worker"],
            env=node.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "Error: scp exited 5 times within 60 s (last status 1); see its log above"
    assert proc.stderr.count("cannot start the SCP") == 5
