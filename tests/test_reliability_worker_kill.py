"""Fault 2: SIGKILL a worker in the middle of a classification, and in the middle of a delivery.

Both run on the embedded default (SQLite, filesystem broker) and on Redis + PostgreSQL: the
``database_url`` fixture picks the database and tests/helpers/stacks.py the matching broker.

Mid-classification: `sgc scp` and `sgc worker` run as separate processes (as `sgc serve` runs
them), a study is sent with dcmtk storescu, and the worker is killed while its job is running.
A new worker must finish the job: one Report row, one SR file, one lost attempt counted. On
the embedded stack nothing redelivers by itself for certain, so this needs the SCP's sweeper
to take the stranded job back (tests/test_job_takeback.py has the rules in-process).

Mid-delivery: the worker is killed at the worst moment of a delivery: Orthanc has stored the
SR and sent its C-STORE response, but the worker has not read it (a TCP proxy between them
holds the response back), so the database still says "pending". A second worker must deliver
again after the claim's lease, Orthanc must end with exactly one SR for the study revision,
and the rows must tell the truth at each step: pending with one attempt and no status while
the outcome is unknown, then sent with the archive's status after two attempts. On the
embedded stack the SCP runs too: its outbox sweep is what sends a lost message again.

The claim of a delivery attempt lasts max(SGC_RESEND_AFTER, DIMSE + ACSE timeout) = 150 s.
The default run moves ``next_attempt_at`` back instead of waiting that long (the clock is all
that changes); the ``long`` variant waits for the lease to run out by itself.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import func, select, update

from db.models import Delivery, DeliveryState, Job, JobState, Report, Study
from db.session import upgrade
from sgc_config.settings import Settings
from tests.conftest import free_port
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import NodeProcesses, count_rows, storescu, wait_until
from tests.helpers.orthanc import orthanc_server
from tests.helpers.stacks import stack_settings
from tests.helpers.tiny_model import train_tiny_model
from tests.test_worker_pipeline import check_sr_in_orthanc, ingest_study

pytestmark = pytest.mark.slow
P_DATA_TF = 0x04
WORKER = ("worker", "-Q", "classify,deliver", "--pool", "solo")
LEASE = 3  # SGC_RESEND_AFTER: the job lease and the outbox resend time


class HoldingProxy:
    """TCP proxy to the archive that, while ``hold`` is set, swallows the archive's first
    P-DATA-TF (the C-STORE response) and keeps the connection open, as a network that
    stalls right after the archive committed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.hold = threading.Event()
        self.hold.set()
        self.held = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _up(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                header = _recv_exact(upstream, 6)
                body = _recv_exact(upstream, int.from_bytes(header[2:6], "big"))
                if header[0] == P_DATA_TF and self.hold.is_set():
                    self.held.set()
                    return  # never forwarded; the connection stays open
                client.sendall(header + body)
        except OSError:
            client.close()

    def close(self) -> None:
        self.listener.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise OSError("closed")
        out += chunk
    return bytes(out)


def _rows(sessions, job_id: int) -> tuple[Job, Report | None, Delivery | None]:
    with sessions() as s:
        job = s.get(Job, job_id)
        report = s.scalars(select(Report).where(Report.job_id == job_id)).one_or_none()
        delivery = None
        if report is not None:
            delivery = s.scalars(select(Delivery).where(Delivery.report_id == report.id)).one()
        for row in (job, report, delivery):
            if row is not None:
                s.expunge(row)
        return job, report, delivery


def _run(tmp_path: Path, tiny_model: Path, database_url: str, wait_for_lease: bool) -> None:
    with orthanc_server(tmp_path / "orthanc") as orthanc, stack_settings(database_url) as stack:
        proxy = HoldingProxy(orthanc.dicom_port)
        node = NodeProcesses.create(
            tmp_path / "node", port=free_port(), model=tiny_model, device="cpu",
            archive=f"{orthanc.ae_title}@127.0.0.1:{proxy.port}", resend_after=LEASE,
            delivery_retry_base=0.5, delivery_retry_max=2, sweep_interval=0.2, **stack,
        )  # fmt: skip
        settings = Settings(**{k[4:].lower(): v for k, v in node.env.items() if k[:4] == "SGC_"})
        upgrade(settings.resolved_database_url)
        job_id = ingest_study(settings, n=4)
        sessions = node.sessions()
        embedded = not stack
        try:
            from worker.celery_app import make_celery

            app = make_celery(settings)
            if embedded:  # the node's outbox sweep sends the job and resends what is lost
                node.start_scp()
            else:  # Redis redelivers by itself; no sweep, so that is what is tested
                app.send_task("sgc.classify_study", args=[job_id], queue="classify")
            first = node.start("worker1", *WORKER)
            wait_until(proxy.held.is_set, "the archive's C-STORE response", 180, [first])
            node.kill("worker1")
            job, report, delivery = _rows(sessions, job_id)
            study_uid = ingest_uid(sessions, job_id)
            assert len(orthanc.sr_instances(study_uid)) == 1, "the archive stored the SR"
            assert job.state == JobState.done and report is not None
            assert delivery.state == DeliveryState.pending  # the outcome is unknown
            assert delivery.attempts == 1 and delivery.last_status is None

            proxy.hold.clear()
            if not wait_for_lease:  # what 150 s would do to the claim, without the wait
                with sessions() as s:
                    s.execute(
                        update(Delivery)
                        .where(Delivery.id == delivery.id)
                        .values(next_attempt_at=datetime.now(UTC))
                    )
                    s.commit()
            second = node.start("worker2", *WORKER)

            def sent() -> bool:
                return _rows(sessions, job_id)[2].state == DeliveryState.sent

            wait_until(sent, "the second delivery", 400 if wait_for_lease else 120, [second])
            _, _, delivery = _rows(sessions, job_id)
            assert delivery.attempts == 2 and delivery.last_status == 0x0000
            assert delivery.last_error is None
            (sr,) = orthanc.sr_instances(study_uid)  # exactly one SR for the revision
            check_sr_in_orthanc(orthanc, settings, job_id)
            app.close()
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()
            proxy.close()


def ingest_uid(sessions, job_id: int) -> str:
    with sessions() as s:
        return s.get(Job, job_id).study.study_uid


@pytest.mark.orthanc
def test_sigkill_during_delivery_leaves_one_sr_and_true_rows(
    tmp_path: Path, tiny_model: Path, database_url: str
) -> None:
    _run(tmp_path, tiny_model, database_url, wait_for_lease=False)


@pytest.mark.orthanc
@pytest.mark.long
def test_sigkill_during_delivery_waits_out_the_lease(
    tmp_path: Path, tiny_model: Path, database_url: str
) -> None:
    _run(tmp_path, tiny_model, database_url, wait_for_lease=True)


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny network at 48 px with many ELBO samples: seconds per study on CPU, so the
    test can catch a job while it runs (shared with tests/test_worker_celery.py's cache)."""
    return train_tiny_model(tmp_path_factory.getbasetemp() / "slow-model", image_size=48, k=64)


def _study_job(sessions, study_uid: str) -> Job | None:
    with sessions() as s:
        return s.scalars(
            select(Job).join(Study).where(Study.study_uid == study_uid).order_by(Job.id)
        ).first()


def _one_sr(node: NodeProcesses, sessions, study_uid: str) -> None:
    assert count_rows(sessions, Report) == 1
    assert len(list((node.storage / "reports" / study_uid).glob("*.dcm"))) == 1


def test_sigkill_mid_classification_leaves_exactly_one_sr(
    tmp_path: Path, slow_model: Path, database_url: str
) -> None:
    files = write_study(tmp_path / "study", n=4)
    study_uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    with stack_settings(database_url) as stack:
        node = NodeProcesses.create(
            tmp_path / "node", port=free_port(), model=slow_model, device="cpu",
            resend_after=LEASE, stable_age=1, sweep_interval=0.2, min_free_mb=0, **stack,
        )  # fmt: skip
        try:
            node.start_scp()
            sessions = node.sessions()
            first = node.start("worker1", *WORKER)
            assert len(storescu(node.port, files).succeeded) == len(files)

            def running() -> bool:
                job = _study_job(sessions, study_uid)
                return job is not None and job.state == JobState.running

            wait_until(running, "the job to start", 180, [first])
            node.kill("worker1")
            assert _study_job(sessions, study_uid).state == JobState.running  # killed mid-run
            second = node.start("worker2", *WORKER)
            wait_until(
                lambda: _study_job(sessions, study_uid).state == JobState.done,
                "the job to be redone by the new worker", 180, [second, node.procs["scp"]],
            )  # fmt: skip
            job = _study_job(sessions, study_uid)
            assert (job.attempts, job.lost_attempts, job.error) == (2, 1, None)
            _one_sr(node, sessions, study_uid)
            time.sleep(2 * LEASE)  # a duplicate message or a second take-back would land now
            assert _study_job(sessions, study_uid).attempts == 2
            _one_sr(node, sessions, study_uid)
            with sessions() as s:
                assert s.scalar(select(func.count()).select_from(Job)) == 1
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()
