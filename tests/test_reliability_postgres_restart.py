"""Fault 4: PostgreSQL goes down and comes back while `sgc scp` is receiving.

A throw-away PostgreSQL cluster (initdb + pg_ctl in a temporary folder, on a free port; the
machine's shared cluster is never touched) backs a real `sgc scp`. A sender keeps storing
distinct instances over one association while the cluster is stopped and started again. The
node must answer a failure status (0x0110, never success) for every instance it could not
record, keep the association and the process up, and store again once PostgreSQL is back,
with no restart. Afterwards every acknowledged instance has its row and file, and a re-send
of the refused ones completes the set.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select

from db.models import Instance
from scp import statuses
from scp.storage import dataset_sha256
from tests.conftest import free_port
from tests.helpers.mg import MGSpec, write_mg
from tests.helpers.nodeproc import NodeProcesses, wait_until
from tests.helpers.scpnode import scu_association

pytestmark = pytest.mark.slow


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL server binaries ({name}) are not installed")
    return found[-1]


class Cluster:
    """A PostgreSQL cluster of our own, run as the ``postgres`` user when we are root."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sgc-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.folder, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
            "-l", str(self.folder / "server.log"), "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class Sender(threading.Thread):
    """Stores a new instance every iteration until stopped; records (file, status)."""

    def __init__(self, port: int, folder: Path) -> None:
        super().__init__(daemon=True)
        self.port, self.folder = port, folder
        self.results: list[tuple[Path, int]] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.association_lost = False

    def run(self) -> None:
        try:
            with scu_association(self.port, [ExplicitVRLittleEndian]) as assoc:
                i = 0
                while not self.stop_event.is_set():
                    path = write_mg(self.folder / f"{i}.dcm", MGSpec(rows=64, cols=48, seed=i))
                    rsp = assoc.send_c_store(path)
                    if rsp is None or "Status" not in rsp or not assoc.is_established:
                        self.association_lost = True
                        return
                    self.results.append((path, int(rsp.Status)))
                    i += 1
                    time.sleep(0.02)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def count(self, status: int) -> int:
        return sum(1 for _, s in list(self.results) if s == status)


def _tally(sender: Sender) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, s in sender.results:
        out[f"0x{s:04X}"] = out.get(f"0x{s:04X}", 0) + 1
    return out


def test_postgres_restart_while_receiving(tmp_path: Path) -> None:
    with throwaway_postgres() as pg:
        node = NodeProcesses.create(
            tmp_path / "node", port=free_port(), database_url=pg.url, min_free_mb=0,
            stable_age=3600,
        )  # fmt: skip
        try:
            scp = node.start_scp()
            sender = Sender(node.port, tmp_path / "sent")
            sender.start()
            wait_until(lambda: sender.count(statuses.SUCCESS) >= 10, "10 stored", 60, [scp])
            pg.stop()
            wait_until(
                lambda: sender.count(statuses.PROCESSING_FAILURE) >= 5, "failures while down", 60
            )
            before_restart = len(sender.results)
            pg.start()
            wait_until(
                lambda: any(s == 0 for _, s in sender.results[before_restart:]),
                "a success after PostgreSQL is back",
                60,
                [scp],
            )
            wait_until(lambda: len(sender.results) >= before_restart + 10, "more stores", 60)
            sender.stop_event.set()
            sender.join(30)
            assert sender.error is None, sender.error
            assert not sender.association_lost, "the association did not survive the outage"
            assert scp.poll() is None, "the SCP process died"

            print(f"\npostgres restart: {len(sender.results)} C-STOREs, statuses {_tally(sender)}")
            seen = {s for _, s in sender.results}
            assert seen == {statuses.SUCCESS, statuses.PROCESSING_FAILURE}, seen
            acked = [p for p, s in sender.results if s == statuses.SUCCESS]
            refused = [p for p, s in sender.results if s != statuses.SUCCESS]
            with node.sessions()() as s:
                rows = {r.sha256: r for r in s.scalars(select(Instance))}
            for path in acked:
                row = rows.get(dataset_sha256(path))
                assert row is not None, f"acknowledged {path.name} has no row"
                assert dataset_sha256(node.storage / row.path) == row.sha256
            assert not any(dataset_sha256(p) in rows for p in refused)

            with scu_association(node.port, [ExplicitVRLittleEndian]) as assoc:
                for path in refused:  # the sender retries what it was refused
                    assert assoc.send_c_store(path).Status == statuses.SUCCESS
            with node.sessions()() as s:
                assert len(list(s.scalars(select(Instance)))) == len(sender.results)
            assert "database unavailable" in node.all_logs()
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()
