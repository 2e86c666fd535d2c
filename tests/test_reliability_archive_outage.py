"""Fault 5 with real processes: the archive is down, then refuses, then accepts.

tests/test_worker_pipeline.py::test_archive_down_then_up_and_refusing_then_accepting runs the
worker's delivery logic in-process against a real Orthanc on both databases. Here the whole
node runs as it does in production (`sgc scp` + `sgc worker`, the embedded SQLite and
filesystem broker) while Orthanc is stopped, then answers 0xA700 (its incoming-instance
filter refuses), then accepts: the deliveries must say so at each step (no status and an
error while down, 0xA700 while refused) and every study's SR must end up in Orthanc once.
The outbox sweep is set to an hour, so the deliver task's own retries must carry it (they
stopped after three before Celery's ``max_retries`` was set on the task).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from db.models import Delivery, DeliveryState, Job, JobState
from tests.conftest import free_port
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import NodeProcesses, storescu, wait_until
from tests.helpers.orthanc import orthanc_server

pytestmark = [pytest.mark.slow, pytest.mark.orthanc]


def _deliveries(sessions) -> list[Delivery]:
    with sessions() as s:
        rows = list(s.scalars(select(Delivery).order_by(Delivery.id)))
        for row in rows:
            s.expunge(row)
        return rows


def test_archive_down_refusing_then_accepting(tmp_path: Path, tiny_model: Path) -> None:
    studies = [write_study(tmp_path / f"s{i}", n=4, rows=96, cols=64) for i in range(2)]
    uids = [dcmread(s[0], stop_before_pixels=True).StudyInstanceUID for s in studies]
    flag = tmp_path / "refuse"
    with orthanc_server(tmp_path / "orthanc", refuse_flag=flag) as orthanc:
        orthanc.stop()
        node = NodeProcesses.create(
            tmp_path / "node", port=free_port(), model=tiny_model, device="cpu",
            archive=orthanc.node, stable_age=1, sweep_interval=0.2, min_free_mb=0,
            delivery_retry_base=0.5, delivery_retry_max=1.5, resend_after=3600,
        )  # fmt: skip
        sessions = node.sessions()
        try:
            scp = node.start_scp()
            worker = node.start("worker", "worker", "-Q", "classify,deliver", "--pool", "solo")
            procs = [scp, worker]
            for files in studies:
                assert storescu(node.port, files).returncode == 0

            def failed_repeatedly() -> bool:
                rows = _deliveries(sessions)
                # more attempts than Celery's default max_retries (3) would allow one task
                return len(rows) == 2 and all(d.attempts >= 5 for d in rows)

            wait_until(failed_repeatedly, "delivery attempts against a down archive", 180, procs)
            for d in _deliveries(sessions):
                assert d.state == DeliveryState.pending and d.last_status is None
                assert "ORTHANC" in (d.last_error or "")
            with sessions() as s:
                assert [j.state for j in s.scalars(select(Job))] == [JobState.done] * 2

            flag.touch()
            orthanc.start()  # up, but refusing every C-STORE with 0xA700

            def refused() -> bool:
                return all(d.last_status == 0xA700 for d in _deliveries(sessions))

            wait_until(refused, "the archive's 0xA700 recorded", 60, procs)
            assert all(d.state == DeliveryState.pending for d in _deliveries(sessions))
            assert all(orthanc.sr_instances(uid) == [] for uid in uids)

            flag.unlink()

            def delivered() -> bool:
                return all(d.state == DeliveryState.sent for d in _deliveries(sessions))

            wait_until(delivered, "every SR delivered", 60, procs)
            for d in _deliveries(sessions):
                assert d.last_status == 0x0000 and d.last_error is None and d.attempts >= 4
            for uid in uids:
                assert len(orthanc.sr_instances(uid)) == 1
        except BaseException:
            print(node.logs())
            print(orthanc.log_tail())
            raise
        finally:
            node.stop_all()
