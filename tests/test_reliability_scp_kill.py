"""Fault 1: SIGKILL `sgc scp` while four dcmtk storescu associations send one 100-instance study.

What a sender was promised must hold after the crash: every instance it got 0x0000 for is on
disk with the bytes it sent and has its row; the instances in flight leave no partial file
once the node is back; re-sending the whole study completes it and the study gets exactly one
job, which a worker then turns into exactly one SR. The kill lands while datasets are being
spooled (checked before the kill). It runs on the embedded default (SQLite, filesystem broker)
and on Redis + PostgreSQL (the ``database_url`` fixture and tests/helpers/stacks.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from db.models import Instance, Job, JobState, Report
from scp.storage import TEMP_SUFFIX, dataset_sha256
from tests.conftest import free_port
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import NodeProcesses, StorescuRun, count_rows, storescu, wait_until
from tests.helpers.stacks import stack_settings

pytestmark = pytest.mark.slow

N_INSTANCES, N_ASSOCIATIONS = 100, 4
KILL_AFTER = 30  # instances recorded before the SIGKILL
STABLE_AGE = 10.0  # longer than kill + restart, so the partial study never settles on its own


def _send_concurrently(port: int, batches: list[list[Path]]) -> list[StorescuRun]:
    runs: list[StorescuRun | None] = [None] * len(batches)

    def send(i: int) -> None:
        runs[i] = storescu(port, batches[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in runs if r is not None]


def test_sigkill_mid_study_loses_nothing_acknowledged(
    tmp_path: Path, database_url: str, tiny_model: Path
) -> None:
    with stack_settings(database_url) as stack:
        _kill_scp_mid_study(tmp_path, tiny_model, stack)


def _kill_scp_mid_study(tmp_path: Path, model: Path, stack: dict[str, object]) -> None:
    # ~1 MB per instance: several chunks per dataset, so the kill finds datasets mid-transfer.
    files = write_study(tmp_path / "study", n=N_INSTANCES, rows=1024, cols=512)
    study_uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    batches = [files[i::N_ASSOCIATIONS] for i in range(N_ASSOCIATIONS)]
    node = NodeProcesses.create(
        tmp_path / "node", port=free_port(), stable_age=STABLE_AGE, sweep_interval=0.2,
        min_free_mb=0, model=model, device="cpu", **stack,
    )  # fmt: skip
    try:
        node.start_scp("scp1")
        sessions = node.sessions()
        result: list[StorescuRun] = []
        sender = threading.Thread(
            target=lambda: result.extend(_send_concurrently(node.port, batches))
        )
        sender.start()
        spool = node.storage / ".spool"

        def mid_transfer() -> bool:
            return count_rows(sessions, Instance) >= KILL_AFTER and any(spool.iterdir())

        wait_until(mid_transfer, "30 instances stored and more in flight", 180)
        node.kill("scp1")
        sender.join(120)
        acked = [p for run in result for p in run.succeeded]
        # A row may be committed with its status still unsent: at most one per association.
        assert KILL_AFTER - N_ASSOCIATIONS <= len(acked) < N_INSTANCES
        assert any(run.returncode != 0 for run in result), "storescu did not see the crash"
        leftovers = list(spool.iterdir()) + list((node.storage / ".incoming").iterdir())
        assert leftovers, "nothing was in flight at the kill"

        node.start_scp("scp2")
        # Every acknowledged instance: file with the sent bytes, and its row.
        with sessions() as s:
            rows = {r.sop_instance_uid: r for r in s.scalars(select(Instance))}
        for path in acked:
            sop = dcmread(path, stop_before_pixels=True).SOPInstanceUID
            assert sop in rows, f"acknowledged {sop} has no row"
            stored = node.storage / rows[sop].path
            assert dataset_sha256(stored) == dataset_sha256(path) == rows[sop].sha256
        # Nothing partial remains: the restart swept the spool and the temporaries.
        assert not any(spool.iterdir())
        assert not list((node.storage / ".incoming").glob(f"*{TEMP_SUFFIX}"))
        # A row always has its file. A file without a row is an instance killed between its
        # rename and its commit: never acknowledged, and adopted when it is sent again.
        on_disk = {p.relative_to(node.storage).as_posix() for p in node.storage.rglob("*.dcm")}
        assert {r.path for r in rows.values()} <= on_disk
        acked_sops = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in acked}
        orphans = {Path(p).stem for p in on_disk} - set(rows)
        assert not orphans & acked_sops

        runs = _send_concurrently(node.port, batches)  # the sender re-sends the study
        assert [r.returncode for r in runs] == [0] * N_ASSOCIATIONS
        assert count_rows(sessions, Instance) == N_INSTANCES
        assert len(list(node.storage.rglob("*.dcm"))) == N_INSTANCES
        with sessions() as s:
            for row in s.scalars(select(Instance)):
                assert dataset_sha256(node.storage / row.path) == row.sha256
        wait_until(lambda: count_rows(sessions, Job) >= 1, "the study's job", 60)
        time.sleep(3.0)  # ~15 more sweeps: a second job for the study must never appear
        with sessions() as s:
            jobs = list(s.scalars(select(Job)))
            assert len(jobs) == 1 and jobs[0].study.study_uid == study_uid
            assert jobs[0].revision == jobs[0].study.received_rev == N_INSTANCES
        worker = node.start("worker", "worker", "-Q", "classify,deliver", "--pool", "solo")
        done = lambda: count_rows(sessions, Job, Job.state == JobState.done)  # noqa: E731
        wait_until(done, "the study classified", 300, [worker])
        assert count_rows(sessions, Report) == 1
        assert len(list((node.storage / "reports" / study_uid).glob("*.dcm"))) == 1
    except BaseException:
        print(node.logs())
        raise
    finally:
        node.stop_all()
