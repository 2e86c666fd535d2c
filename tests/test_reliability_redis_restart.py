"""Fault 3: the Redis broker stops while studies arrive and starts again later, empty.

A redis-server of our own (free port, no persistence: whatever it held is gone on restart,
the harshest case; the machine's shared Redis is never touched) carries the messages between
a real `sgc scp` and a real `sgc worker`. Studies sent while Redis is down are stored and get
pending jobs that cannot be dispatched; once Redis is back the SCP's outbox sweep sends them,
the worker reconnects by itself, and every study ends up classified exactly once: one job,
done, one report, a prediction per view.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from db.models import Job, JobState, Prediction, Report, Study
from tests.conftest import free_port, require_binary
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import NodeProcesses, port_open, storescu, wait_until

pytestmark = pytest.mark.slow


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [require_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: port_open(self.port), "redis-server to listen", 30, [self.proc])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # the broker vanishes; nothing is saved
            self.proc.wait(10)
        self.proc = None


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _study_state(sessions, study_uid: str) -> tuple[list[Job], int, int]:
    with sessions() as s:
        study = s.scalars(select(Study).where(Study.study_uid == study_uid)).one_or_none()
        if study is None:
            return [], 0, 0
        jobs = list(s.scalars(select(Job).where(Job.study_id == study.id)))
        reports = sum(len(j.reports) for j in jobs)
        preds = len(
            list(s.scalars(select(Prediction).where(Prediction.job_id.in_([j.id for j in jobs]))))
        )
        for j in jobs:
            s.expunge(j)
        return jobs, reports, preds


def test_redis_down_while_studies_arrive(tmp_path: Path, tiny_model: Path) -> None:
    studies = [write_study(tmp_path / f"study{i}", n=4, rows=96, cols=64) for i in range(4)]
    uids = [dcmread(s[0], stop_before_pixels=True).StudyInstanceUID for s in studies]
    with redis_server(tmp_path / "redis") as redis:
        node = NodeProcesses.create(
            tmp_path / "node", port=free_port(), broker_url=f"redis://127.0.0.1:{redis.port}/0",
            model=tiny_model, device="cpu", stable_age=1, sweep_interval=0.2, resend_after=5,
            min_free_mb=0, fsync="false",
        )  # fmt: skip
        sessions = node.sessions()

        def done(uid: str) -> bool:
            jobs, _, _ = _study_state(sessions, uid)
            return bool(jobs) and all(j.state == JobState.done for j in jobs)

        try:
            scp = node.start_scp()
            worker = node.start("worker", "worker", "-Q", "classify,deliver", "--pool", "solo")
            assert storescu(node.port, studies[0]).returncode == 0
            wait_until(lambda: done(uids[0]), "study 0 classified", 120, [scp, worker])

            redis.stop()
            for files in studies[1:3]:  # arrive while the broker is gone
                run = storescu(node.port, files)
                assert run.returncode == 0 and len(run.succeeded) == 4, run.output
            for uid in uids[1:3]:
                wait_until(lambda u=uid: _study_state(sessions, u)[0], f"job of {uid}", 30)
            time.sleep(2.0)  # ~10 sweeps against a dead broker
            for uid in uids[1:3]:
                (job,), _, _ = _study_state(sessions, uid)
                assert job.state == JobState.pending and job.dispatched_at is None

            redis.start()  # same port, empty: a restart that lost everything
            assert storescu(node.port, studies[3]).returncode == 0
            for uid in uids:
                wait_until(lambda u=uid: done(u), f"{uid} classified", 180, [scp, worker])
            time.sleep(2.0)  # a duplicate classification would show up now
            for uid in uids:
                jobs, reports, preds = _study_state(sessions, uid)
                assert len(jobs) == 1 and jobs[0].state == JobState.done, uid
                assert jobs[0].attempts == 1, "a study was classified more than once"
                assert reports == 1 and preds == 4
            with sessions() as s:
                assert len(list(s.scalars(select(Report)))) == len(uids)
            assert scp.poll() is None and worker.poll() is None
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()
