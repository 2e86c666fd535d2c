"""Starting a real node front end (SCP + sweeper) in-process and sending to it.

Why in-process: the tests look at the database and the storage folder the SCP wrote while
the peers (dcmtk, Orthanc, pynetdicom) talk to it over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from sqlalchemy import func, select

from db.models import Instance, Job, Study
from scp.server import SCPServer
from sgc_config.settings import Settings, load_settings
from tests.helpers.mg import MG_FOR_PRESENTATION
from tests.helpers.services import free_port


def node_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "host": "127.0.0.1",
        "port": free_port(),
        "stable_age": 0.5,
        "sweep_interval": 0.1,
        "min_free_mb": 0,
    }
    values.update(overrides)
    return load_settings(**values)


@contextlib.contextmanager
def running_node(settings: Settings, sweeper: bool = True) -> Iterator[SCPServer]:
    node = SCPServer(settings, sweeper=sweeper).start()
    try:
        yield node
    finally:
        node.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def count(node: SCPServer, model: type) -> int:
    with node.session_factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def jobs(node: SCPServer) -> list[Job]:
    with node.session_factory() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def instances(node: SCPServer) -> list[Instance]:
    with node.session_factory() as s:
        return list(s.scalars(select(Instance).order_by(Instance.id)))


def study(node: SCPServer, study_uid: str) -> Study | None:
    with node.session_factory() as s:
        return s.scalars(select(Study).where(Study.study_uid == study_uid)).one_or_none()


@contextlib.contextmanager
def scu_association(
    port: int,
    transfer_syntaxes: list[str],
    sop_classes: tuple[str, ...] = (MG_FOR_PRESENTATION,),
    calling: str = "TESTSCU",
    called: str = "SGC_NODE",
):
    """A pynetdicom SCU association that sends Part 10 files byte for byte (chunked)."""
    ae = AE(ae_title=calling)
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, transfer_syntaxes)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "association was not accepted"
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield assoc
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        if assoc.is_established:
            assoc.release()


def send_file(assoc, path: Path) -> Dataset:
    """C-STORE one file as encoded on disk; return the response status dataset."""
    status = assoc.send_c_store(path)
    assert status is not None and "Status" in status, "no C-STORE response"
    return status
