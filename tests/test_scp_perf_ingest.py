"""The fast ingest path: the spool file renamed into place, and several SCP processes.

What must hold for the speed-ups to be safe: the renamed file is byte for byte the dataset
that was sent behind our File Meta (with the calling AE title), its hash is the hash of
those bytes, re-sends keep their unchanged/replaced semantics, anything that cannot be
renamed is left untouched for the copying writer, and with several processes on one port
every instance lands once and every study gets one job.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.dsutils import create_file_meta

from db.models import Instance, Job
from scp.digest import bytes_digest
from scp.part10 import dataset_offset
from scp.spool import SpoolFile, lookup
from scp.storage import Storage, dataset_digest, file_meta
from tests.conftest import free_port, require_binary
from tests.helpers.mg import MG_FOR_PRESENTATION, MGSpec, write_mg, write_study
from tests.helpers.nodeproc import NodeProcesses, count_rows, storescu, wait_until
from tests.helpers.scpnode import instances, node_settings, running_node


def _spool_like_pynetdicom(tmp_path: Path, source: Path, chunk: int) -> SpoolFile:
    """Write ``source``'s dataset into a SpoolFile exactly as pynetdicom 3.0.4 does."""
    offset = dataset_offset(source)
    sent = dcmread(source, stop_before_pixels=True)
    old = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        spool = SpoolFile(delete=False, mode="wb", suffix=".dcm")
    finally:
        tempfile.tempdir = old
    spool.write(b"\x00" * 128)
    spool.write(b"DICM")
    meta = create_file_meta(
        sop_class_uid=sent.SOPClassUID,
        sop_instance_uid=sent.SOPInstanceUID,
        transfer_syntax=ExplicitVRLittleEndian,
    )
    write_file_meta_info(spool, meta)  # type: ignore[arg-type]
    data = source.read_bytes()[offset:]
    for start in range(0, len(data), chunk):
        spool.write(data[start : start + chunk])
        spool.file.flush()
    return spool


def _meta(spec: MGSpec, aet: str = "STORESCU"):
    return file_meta(MG_FOR_PRESENTATION, spec.sop_instance_uid, ExplicitVRLittleEndian, aet)


@pytest.mark.parametrize("chunk", [1, 4093, 1 << 20])
def test_spool_file_is_renamed_into_place_with_our_meta(tmp_path: Path, chunk: int) -> None:
    spec = MGSpec(seed=1, rows=128 if chunk == 1 else 512, cols=96 if chunk == 1 else 384)
    source = write_mg(tmp_path / "sent.dcm", spec)
    sent_dataset = source.read_bytes()[dataset_offset(source) :]
    spool = _spool_like_pynetdicom(tmp_path, source, chunk)
    assert lookup(spool.name) is spool
    assert spool.offset == dataset_offset(spool.name)
    assert spool.digest() == bytes_digest(sent_dataset)

    storage = Storage(tmp_path / "store", fsync=True)
    storage.prepare()
    stored = storage.adopt(spool, _meta(spec), spec.study_uid, spec.series_uid)
    assert stored is not None and stored.outcome == "new"
    target = storage.path_of(stored.relpath)
    assert not os.path.exists(spool.name), "the spool file was renamed, not copied"
    assert target.read_bytes()[-len(sent_dataset) :] == sent_dataset
    assert dataset_digest(target) == stored.digest == spool.digest()
    written = dcmread(target)
    assert written.file_meta.SourceApplicationEntityTitle == "STORESCU"
    assert written.file_meta.MediaStorageSOPInstanceUID == spec.sop_instance_uid
    assert written.PixelData == dcmread(source).PixelData
    spool.close()
    assert lookup(spool.name) is None


@pytest.mark.parametrize("fsync", [True, False])
def test_early_writeback_follows_the_fsync_setting(
    tmp_path: Path, monkeypatch, fsync: bool
) -> None:
    """With fsync on, the spool starts the disk write every WRITEBACK_EVERY bytes (so the
    fsync at acknowledgement finds little left); with fsync off it never does."""
    from scp import spool as spool_module

    calls: list[tuple[int, int]] = []
    real = spool_module._sync_file_range
    if real is None:
        pytest.skip("no sync_file_range on this platform")

    def spy(fd: int, offset: int, nbytes: int, flags: int) -> int:
        calls.append((offset, nbytes))
        return real(fd, offset, nbytes, flags)

    monkeypatch.setattr(spool_module, "_sync_file_range", spy)
    monkeypatch.setattr(SpoolFile, "writeback_every", SpoolFile.writeback_every)
    spool_module.install(early_writeback=fsync)
    source = write_mg(tmp_path / "sent.dcm", MGSpec(seed=2, rows=2048, cols=1536))  # 6 MB
    spool = _spool_like_pynetdicom(tmp_path, source, 1 << 17)
    spool.close()
    if fsync:
        assert calls and calls[0][0] == 0, "write-back starts at the file's first byte"
        assert all(n >= spool_module.WRITEBACK_EVERY for _, n in calls)
        ends = [a + n for a, n in calls[:-1]]
        assert ends == [a for a, _ in calls[1:]], "contiguous ranges"
    else:
        assert calls == []


def test_adopted_resends_are_unchanged_or_replaced(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "store", fsync=True)
    storage.prepare()
    spec = MGSpec(seed=1)
    first = _spool_like_pynetdicom(tmp_path, write_mg(tmp_path / "a.dcm", spec), 4096)
    stored = storage.adopt(first, _meta(spec), spec.study_uid, spec.series_uid)
    assert stored is not None
    target = storage.path_of(stored.relpath)
    inode = target.stat().st_ino

    again = _spool_like_pynetdicom(tmp_path, write_mg(tmp_path / "b.dcm", spec), 4096)
    same = storage.adopt(again, _meta(spec, "OTHER"), spec.study_uid, spec.series_uid)
    assert same is not None and same.outcome == "unchanged"
    assert target.stat().st_ino == inode and not os.path.exists(again.name)

    spec.seed = 2
    changed = _spool_like_pynetdicom(tmp_path, write_mg(tmp_path / "c.dcm", spec), 4096)
    replaced = storage.adopt(changed, _meta(spec), spec.study_uid, spec.series_uid)
    assert replaced is not None and replaced.outcome == "replaced"
    assert dataset_digest(target) == changed.digest() != stored.digest


def test_adopt_leaves_a_spool_file_it_cannot_take(tmp_path: Path) -> None:
    """A File Meta that would not fit in place: nothing is touched, the caller copies."""
    storage = Storage(tmp_path / "store", fsync=True)
    storage.prepare()
    spec = MGSpec()
    spool = _spool_like_pynetdicom(tmp_path, write_mg(tmp_path / "a.dcm", spec), 4096)
    before = Path(spool.name).read_bytes()
    for_processing = MG_FOR_PRESENTATION + ".1"  # a longer SOP Class UID than was spooled
    longer = file_meta(for_processing, spec.sop_instance_uid, ExplicitVRLittleEndian, "STORESCU")
    assert storage.adopt(spool, longer, spec.study_uid, spec.series_uid) is None
    assert Path(spool.name).read_bytes() == before
    assert not any(storage.root.rglob("*.dcm"))


def test_a_spool_header_we_cannot_rewrite_is_kept_and_never_adopted(tmp_path: Path) -> None:
    old = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        spool = SpoolFile(delete=False, mode="wb", suffix=".dcm")
    finally:
        tempfile.tempdir = old
    meta = create_file_meta(
        sop_class_uid="", sop_instance_uid="1.2.3", transfer_syntax=ExplicitVRLittleEndian
    )
    spool.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(spool, meta, enforce_standard=False)  # type: ignore[arg-type]
    spool.write(b"\x08\x00\x16\x00UI\x00\x00")
    expected = bytearray(b"\x00" * 128 + b"DICM")
    buf = io.BytesIO()
    write_file_meta_info(buf, meta, enforce_standard=False)  # type: ignore[arg-type]
    expected += buf.getvalue() + b"\x08\x00\x16\x00UI\x00\x00"
    assert Path(spool.name).read_bytes() == bytes(expected)
    assert lookup(spool.name) is None and spool.error is None
    spool.close()


def test_storescu_instances_are_stored_by_rename(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = write_study(tmp_path / "study", n=3)
    settings = node_settings(tmp_path, f"sqlite:///{tmp_path / 'sgc.db'}")
    from db.session import upgrade

    upgrade(settings.resolved_database_url)
    caplog.set_level("INFO", logger="scp.handlers")
    old = tempfile.tempdir
    tempfile.tempdir = str(tmp_path / "spool")  # the storage volume, as `sgc scp` does
    os.mkdir(tempfile.tempdir)
    try:
        with running_node(settings, sweeper=False) as node:
            assert storescu(node.address[1], files).succeeded == files
            rows = {r.sop_instance_uid: r for r in instances(node)}
            for path in files:
                sent = dcmread(path)
                stored = node.storage.path_of(rows[sent.SOPInstanceUID].path)
                assert dcmread(stored).PixelData == sent.PixelData
                assert rows[sent.SOPInstanceUID].sha256 == dataset_digest(stored)
    finally:
        tempfile.tempdir = old
    stored_lines = [r.getMessage() for r in caplog.records if "stored " in r.getMessage()]
    assert len(stored_lines) == 3 and all("(renamed)" in m for m in stored_lines)
    assert os.listdir(tmp_path / "spool") == []


def _listeners(port: int) -> set[int]:
    out = subprocess.run(
        [require_binary("ss"), "-ltnpH", f"sport = :{port}"], capture_output=True, text=True
    ).stdout
    return {int(p.split("=")[1]) for p in out.replace(",", " ").split() if p.startswith("pid=")}


def test_several_scp_processes_share_the_port(tmp_path: Path) -> None:
    require_binary("storescu")
    node = NodeProcesses.create(
        tmp_path / "node", port=free_port(), scp_processes=2, stable_age=1.0, sweep_interval=0.2
    )
    studies = [write_study(tmp_path / f"s{i}", n=2) for i in range(4)]
    try:
        proc = node.start_scp()
        wait_until(lambda: len(_listeners(node.port)) == 2, "two processes on the port")
        results: list = [None] * 4

        def send(i: int) -> None:
            results[i] = storescu(node.port, studies[i])

        senders = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        assert all(r.succeeded == s for r, s in zip(results, studies, strict=True)), node.logs()
        sessions = node.sessions()
        assert count_rows(sessions, Instance) == 8
        wait_until(lambda: count_rows(sessions, Job) >= 4, "a job per study", procs=[proc])
        # The sweeper runs in one process only: still exactly one job per study later.
        time.sleep(1.5)
        assert count_rows(sessions, Job) == 4, node.logs()
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, node.logs()
        assert _listeners(node.port) == set()
    finally:
        node.stop_all()


def test_receive_processes_stop_with_a_killed_parent(tmp_path: Path) -> None:
    """An orphan would keep taking connections beside the node that replaces it."""
    node = NodeProcesses.create(tmp_path / "node", port=free_port(), scp_processes=2)
    try:
        proc = node.start_scp()
        wait_until(lambda: len(_listeners(node.port)) == 2, "two processes on the port")
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, not its process group
        proc.wait(timeout=10)
        wait_until(lambda: not _listeners(node.port), "the receive process to stop", 15)
    finally:
        node.stop_all()


def test_part10_prefix_is_parsed_once_for_every_writer() -> None:
    """The header the storage writer encodes is the one the spool file and handler parse."""
    from scp.part10 import NotPart10, encode_meta, meta_end, read_meta

    header = encode_meta(file_meta(MG_FOR_PRESENTATION, "1.2.3.4", ExplicitVRLittleEndian, "A"))
    assert meta_end(header) == len(header)
    meta = read_meta(header)
    assert meta.MediaStorageSOPInstanceUID == "1.2.3.4"
    assert meta.SourceApplicationEntityTitle == "A"  # the padding is not significant
    for junk in (b"", header[:143], b"\x00" * 128 + b"DICX" + header[132:]):
        with pytest.raises(NotPart10):
            meta_end(junk)


def test_p_data_pdus_decode_to_views_equal_to_pynetdicoms_copies() -> None:
    """NodeDUL's zero-copy P-DATA-TF decode gives the same PDVs as pynetdicom's own."""
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from scp.transport import NodeDUL

    primitive = P_DATA()
    primitive.presentation_data_value_list = [[1, b"\x03command"], [3, b"\x00" + os.urandom(5000)]]
    encoded = P_DATA_TF(primitive).encode()
    theirs = P_DATA_TF()
    theirs.decode(encoded)
    dul = Association(AE(), "acceptor").dul
    dul.__class__ = NodeDUL
    ours, event = dul._decode_pdu(bytearray(encoded))
    assert event == "Evt10"
    assert [
        (i.presentation_context_id, bytes(i.presentation_data_value))
        for i in ours.presentation_data_value_items
    ] == [
        (i.presentation_context_id, i.presentation_data_value)
        for i in theirs.presentation_data_value_items
    ]
    assert all(
        isinstance(i.presentation_data_value, memoryview)
        for i in ours.presentation_data_value_items
    )
    # An item length running past the PDU goes to pynetdicom's decoder, which rejects it
    # (the DUL then aborts the association, as without NodeDUL), never a view past the end.
    broken = bytearray(encoded)
    broken[6:10] = len(encoded).to_bytes(4, "big")
    with pytest.raises(AssertionError):
        dul._decode_pdu(broken)


def test_responses_wake_the_waiting_reactor(tmp_path: Path) -> None:
    """The DUL waits in select for data, but a queued response ends the wait at once.

    Without the wake-up every C-ECHO response would wait out DUL_WAIT; 40 echoes on one
    association take well under half of 40 x DUL_WAIT.
    """
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from scp.transport import DUL_WAIT

    with running_node(
        node_settings(tmp_path, f"sqlite:///{tmp_path / 'n.db'}"), sweeper=False
    ) as node:
        ae = AE(ae_title="ECHOSCU")
        ae.add_requested_context(Verification)
        assoc = ae.associate(*node.address, ae_title="SGC_NODE")
        assert assoc.is_established
        try:
            assoc.send_c_echo()  # first one off the clock
            start = time.perf_counter()
            for _ in range(40):
                assert assoc.send_c_echo().Status == 0
            elapsed = time.perf_counter() - start
        finally:
            assoc.release()
    assert elapsed < 40 * DUL_WAIT / 2, f"40 C-ECHOs took {elapsed:.2f} s"


def test_default_scp_processes_follow_the_cores(tmp_path: Path, monkeypatch) -> None:
    """SGC_SCP_PROCESSES=0 (the default): one receive process per usable core, at most 8."""
    from scp import server
    from sgc_config.settings import load_settings

    settings = load_settings(data_dir=tmp_path)
    assert settings.scp_processes == 0
    monkeypatch.setattr(server.os, "sched_getaffinity", lambda _pid: set(range(2)))
    assert server.scp_processes(settings) == 2
    monkeypatch.setattr(server.os, "sched_getaffinity", lambda _pid: set(range(64)))
    assert server.scp_processes(settings) == server.AUTO_PROCESSES_MAX == 8
    assert server.scp_processes(load_settings(data_dir=tmp_path, scp_processes=3)) == 3


@pytest.mark.parametrize(("level", "bound"), [(logging.WARNING, False), (logging.INFO, True)])
def test_pynetdicom_event_log_handlers_only_where_they_would_log(
    tmp_path: Path, level: int, bound: bool
) -> None:
    """pynetdicom's default handlers build a log line for every PDU (an A-ASSOCIATE-RQ's
    ~120 contexts by name); the node binds them only when pynetdicom's logger would emit
    it, and an association works either way."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    logger = logging.getLogger("pynetdicom")
    old = logger.level
    logger.setLevel(level)
    try:
        settings = node_settings(tmp_path, f"sqlite:///{tmp_path / 'n.db'}")
        with running_node(settings, sweeper=False) as node:
            assert node.server is not None
            handlers = node.server.get_handlers(evt.EVT_PDU_RECV)
            ae = AE(ae_title="ECHOSCU")
            ae.add_requested_context(Verification)
            assoc = ae.associate(*node.address, ae_title="SGC_NODE")
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assoc.release()
    finally:
        logger.setLevel(old)
    assert bool(handlers) is bound
