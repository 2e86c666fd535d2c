"""`sgc serve` runs the STOW-RS door as a process of its own when SGC_WEB_PORT is set: a study
posted there becomes a job, and a door that is killed comes back and stores again."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from db.models import Instance, Job
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import children_of, count_rows, port_open, wait_until
from tests.helpers.stacks import stack_settings
from tests.helpers.stow import files_body, post, web_node, web_url


def _web_child(parent: int) -> int | None:
    """The pid of the `sgc web` child of ``parent`` (None while there is none alive)."""
    pids = [p for p, cmd in children_of(parent).items() if "sgc_node web" in cmd]
    return pids[0] if pids else None


def test_serve_runs_the_door_and_restarts_it(tmp_path: Path, database_url: str) -> None:
    """On both stacks: the embedded default and Redis + PostgreSQL."""
    with stack_settings(database_url) as stack:
        node = web_node(tmp_path / "node", **stack)
        port = int(node.env["SGC_WEB_PORT"])
        try:
            serve = node.start("serve", "serve", "--no-worker")
            wait_until(lambda: port_open(port), "the door under sgc serve", 90, [serve])
            rsp = post(f"{web_url(node)}/studies", *files_body(write_study(tmp_path / "a", n=2)))
            assert rsp.status_code == 200, rsp.text
            sessions = node.sessions()
            wait_until(lambda: count_rows(sessions, Job) == 1, "the study to become a job", 60)

            door = _web_child(serve.pid)
            assert door is not None
            os.kill(door, signal.SIGKILL)
            wait_until(
                lambda: _web_child(serve.pid) not in (None, door) and port_open(port),
                "a new door",
                90,
                [serve],
            )
            rsp = post(f"{web_url(node)}/studies", *files_body(write_study(tmp_path / "b", n=2)))
            assert rsp.status_code == 200, rsp.text
            assert count_rows(sessions, Instance) == 4
            os.kill(serve.pid, signal.SIGTERM)
            assert serve.wait(60) == 0
            # Every child stops cleanly, the door too (it used to die of the re-raised SIGTERM).
            stopped = node.log_path("serve").read_text()
            assert "web stopped (status 0)" in stopped, stopped[-3000:]
            assert "stopped (status -" not in stopped, stopped[-3000:]
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()
