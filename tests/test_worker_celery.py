"""Real processes end to end: `sgc scp` receives a study over DICOM, a real `sgc worker`
(Celery, Redis or the embedded filesystem transport) classifies it, the SR lands in a real
Orthanc; and a worker SIGKILLed mid-classification leaves exactly one SR once a new one runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Job, JobState, Report
from db.session import upgrade
from sgc_config.settings import Settings
from tests.conftest import REDIS_URL, free_port, require_binary
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import stop_process_groups
from tests.helpers.orthanc import orthanc_server
from tests.helpers.tiny_model import train_tiny_model
from tests.test_worker_pipeline import check_sr_in_orthanc, ingest_study
from worker.runtime import sessions_for

#: Redis database of the worker tests (the SCP's tests use 11); flushed by these tests only.
REDIS_DB = 12
WAIT = 120.0


def _wait(predicate, what: str, timeout: float = WAIT, procs=()) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process {p.args} exited with {p.returncode}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(params=["filesystem", "redis"])
def broker_url(request) -> Iterator[str | None]:
    if request.param == "filesystem":
        yield None
        return
    import redis

    client = redis.Redis.from_url(f"{REDIS_URL}/{REDIS_DB}")
    client.flushdb()
    yield f"{REDIS_URL}/{REDIS_DB}"
    client.flushdb()


class Node:
    """Environment and child processes of one node under test."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
        self.env.update(env)
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "sgc_node", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        stop_process_groups(self.procs)

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
            for f in sorted(self.tmp.glob("*.log"))
        )


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k[4:].lower(): v for k, v in env.items() if k.startswith("SGC_")})


def test_study_from_scp_is_classified_by_a_worker_and_lands_in_orthanc(
    tmp_path: Path,
    broker_url: str | None,
    tiny_model: Path,
) -> None:
    storescu = require_binary("storescu")
    with orthanc_server(tmp_path / "orthanc") as orthanc:
        scp_port = free_port()
        env = {
            "SGC_DATA_DIR": str(tmp_path / "data"),
            "SGC_PORT": str(scp_port),
            "SGC_HOST": "127.0.0.1",
            "SGC_STABLE_AGE": "0.5",
            "SGC_SWEEP_INTERVAL": "0.2",
            "SGC_ARCHIVE": orthanc.node,
            "SGC_MODEL": str(tiny_model),
            "SGC_DEVICE": "cpu",
            "SGC_METRICS_PORT": "0",
            "SGC_FSYNC": "false",
        }
        if broker_url:
            env["SGC_BROKER_URL"] = broker_url
        settings = _settings(env)
        upgrade(settings.resolved_database_url)
        node = Node(tmp_path, env)
        try:
            scp = node.start("scp", name="scp")
            worker = node.start("worker", "-Q", "classify,deliver", name="worker")
            _wait(lambda: _port_open(scp_port), "the SCP to listen", procs=[scp])
            files = write_study(tmp_path / "study", n=4)
            sent = subprocess.run(
                [storescu, "-aec", "SGC_NODE", "127.0.0.1", str(scp_port), *map(str, files)],
                capture_output=True,
                text=True,
            )
            assert sent.returncode == 0, sent.stderr
            import pydicom

            study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
            _wait(
                lambda: len(orthanc.sr_instances(study_uid)) == 1,
                "the SR in Orthanc",
                procs=[scp, worker],
            )
            sessions = sessions_for(settings)
            with sessions() as session:
                job = session.scalars(select(Job)).one()
                assert job.state == JobState.done and job.study.study_uid == study_uid
                job_id = job.id
            found = check_sr_in_orthanc(orthanc, settings, job_id)
            assert found["study_uid"] == study_uid
            # The SR sits next to the images in the same Orthanc study.
            assert len(orthanc.instances_of_study(study_uid)) == 1  # only the SR was sent
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same tiny network at 48 px with many ELBO samples: seconds per study on CPU, so the
    test can catch a job while it runs."""
    return train_tiny_model(tmp_path_factory.getbasetemp() / "slow-model", image_size=48, k=64)


def test_sigkill_mid_classification_leaves_exactly_one_sr(tmp_path: Path, slow_model: Path) -> None:
    import redis

    prefix = f"sgctest-{uuid.uuid4().hex[:8]}:"
    broker = f"{REDIS_URL}/{REDIS_DB}?global_keyprefix={prefix}"
    with orthanc_server(tmp_path / "orthanc") as orthanc:
        env = {
            "SGC_DATA_DIR": str(tmp_path / "data"),
            "SGC_BROKER_URL": broker,
            "SGC_ARCHIVE": orthanc.node,
            "SGC_MODEL": str(slow_model),
            "SGC_DEVICE": "cpu",
            "SGC_METRICS_PORT": "0",
            "SGC_RESEND_AFTER": "3",
        }
        settings = _settings(env)
        upgrade(settings.resolved_database_url)
        job_id = ingest_study(settings, n=4)
        sessions = sessions_for(settings)
        node = Node(tmp_path, env)
        try:
            from worker.celery_app import make_celery

            app = make_celery(settings)
            app.send_task("sgc.classify_study", args=[job_id], queue="classify")
            first = node.start("worker", "-Q", "classify,deliver", name="worker1")

            def running() -> bool:
                with sessions() as session:
                    return session.get(Job, job_id).state == JobState.running

            _wait(running, "the job to start", procs=[first])
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            with sessions() as session:
                assert session.get(Job, job_id).state == JobState.running  # killed mid-run

            second = node.start("worker", "-Q", "classify,deliver", name="worker2")

            def done() -> bool:
                with sessions() as session:
                    return session.get(Job, job_id).state == JobState.done

            _wait(done, "the job to be redone by the new worker", procs=[second])
            with sessions() as session:
                job = session.get(Job, job_id)
                assert job.attempts == 2
                study_uid = job.study.study_uid
                assert len(session.scalars(select(Report)).all()) == 1
            _wait(lambda: len(orthanc.sr_instances(study_uid)) == 1, "the SR", procs=[second])
            time.sleep(1.0)  # a duplicate delivery would land now
            assert len(orthanc.sr_instances(study_uid)) == 1
            check_sr_in_orthanc(orthanc, settings, job_id)
            app.close()
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()
            client = redis.Redis.from_url(f"{REDIS_URL}/{REDIS_DB}")
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
