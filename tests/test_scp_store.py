"""C-STORE SCP against real peers: dcmtk storescu/echoscu and pynetdicom, on both databases.

Each test starts its own node on a free port and checks what matters to a sender: the
status it gets, and that exactly the right file and row exist afterwards.
"""

from __future__ import annotations

import io
import subprocess
import threading
from pathlib import Path

import pytest
from alembic import command
from pydicom import dcmread
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid
from pynetdicom import AE
from sqlalchemy import select, text

from db.models import Instance, Job, Study
from db.session import alembic_config, make_engine, make_session_factory, upgrade
from scp import statuses
from scp.catalog import ReceivedInstance, record_instance
from scp.part10 import dataset_offset, file_meta
from scp.storage import Storage, dataset_digest
from tests.conftest import require_binary
from tests.helpers.mg import MG_FOR_PRESENTATION, MGSpec, mg_dataset, write_mg, write_study
from tests.helpers.scpnode import (
    count,
    instances,
    node_settings,
    running_node,
    scu_association,
    send_file,
    study,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def storescu(port: int, files: list[Path], *extra: str, calling: str = "STORESCU") -> int:
    cmd = [require_binary("storescu"), "-aet", calling, "-aec", "SGC_NODE", *extra]
    cmd += ["127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, timeout=120).returncode


def test_storescu_uncompressed_and_jpeg2000_are_stored_as_received(
    tmp_path: Path, database_url: str
) -> None:
    plain = write_study(tmp_path / "plain", n=2)
    j2k = write_study(tmp_path / "j2k", n=2, j2k=True)
    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        assert storescu(node.address[1], plain) == 0
        assert storescu(node.address[1], j2k, "-xv") == 0
        rows = {r.sop_instance_uid: r for r in instances(node)}
        assert len(rows) == 4
        for path in plain + j2k:
            sent = dcmread(path)
            row = rows[sent.SOPInstanceUID]
            stored = dcmread(node.storage.path_of(row.path))
            ts = JPEG2000Lossless if path in j2k else ExplicitVRLittleEndian
            assert row.transfer_syntax_uid == ts == stored.file_meta.TransferSyntaxUID
            assert row.path == (
                f"{sent.StudyInstanceUID}/{sent.SeriesInstanceUID}/{sent.SOPInstanceUID}.dcm"
            )
            assert stored.PixelData == sent.PixelData  # bytes as received, no transcoding
            assert row.classifiable and row.calling_aet == "STORESCU"
            assert row.sha256 == dataset_digest(node.storage.path_of(row.path))
        assert count(node, Study) == 2
        assert not any(node.storage.incoming.iterdir()), "temporary files left behind"


def test_stored_file_is_valid_dicom(tmp_path: Path, database_url: str) -> None:
    path = write_mg(tmp_path / "a.dcm", MGSpec(photometric="MONOCHROME1", view="MLO"))
    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        assert storescu(node.address[1], [path]) == 0
        stored = node.storage.path_of(instances(node)[0].path)
    result = subprocess.run(
        [require_binary("dciodvfy"), str(stored)], capture_output=True, text=True
    )
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("Error")] == []


def test_echoscu(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    from db.session import upgrade

    upgrade(url)
    with running_node(node_settings(tmp_path, url), sweeper=False) as node:
        result = subprocess.run(
            [require_binary("echoscu"), "-aec", "SGC_NODE", "127.0.0.1", str(node.address[1])],
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr


def test_pynetdicom_scu_and_resend_idempotency(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec = MGSpec(seed=1)
    first = write_mg(tmp_path / "first.dcm", spec)
    spec.seed = 2  # same UIDs, different pixels
    changed = write_mg(tmp_path / "changed.dcm", spec)
    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        with scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc:
            for _ in range(3):
                assert send_file(assoc, first).Status == statuses.SUCCESS
        assert count(node, Instance) == 1
        row = instances(node)[0]
        assert study(node, spec.study_uid).received_rev == 1  # re-sends changed nothing
        assert row.sha256 == dataset_digest(node.storage.path_of(row.path))
        before = node.storage.path_of(row.path).stat().st_mtime_ns

        with scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc:
            caplog.set_level("INFO", logger="scp")
            assert send_file(assoc, changed).Status == statuses.SUCCESS
        assert count(node, Instance) == 1
        new_row = instances(node)[0]
        assert new_row.id == row.id and new_row.sha256 != row.sha256
        assert study(node, spec.study_uid).received_rev == 2  # changed content: re-classify
        stored = dcmread(node.storage.path_of(new_row.path))
        assert stored.PixelData == dcmread(changed).PixelData
        assert node.storage.path_of(row.path).stat().st_mtime_ns != before
        assert any("replaced" in r.getMessage() for r in caplog.records)
        assert "Test^Patient" not in caplog.text and "PAT001" not in caplog.text


def _write_raw(path: Path, sop_class: str, sop_instance: str, body: bytes) -> Path:
    """A Part 10 file whose meta says one thing and whose dataset bytes are ``body``."""
    from scp.storage import file_meta

    buf = io.BytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, file_meta(sop_class, sop_instance, ExplicitVRLittleEndian))
    path.write_bytes(buf.getvalue() + body)
    return path


def _encoded(ds) -> bytes:
    from pydicom.filebase import DicomBytesIO

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # the bad UIDs are the point
def test_bad_inputs_get_precise_statuses_and_harm_nothing(
    tmp_path: Path, database_url: str
) -> None:
    good_spec = MGSpec(seed=3)
    good = write_mg(tmp_path / "good.dcm", good_spec)
    good_ds = dcmread(good)
    body = _encoded(good_ds)
    uid = good_spec.sop_instance_uid

    def variant(name: str, **changes: object):
        ds = mg_dataset(MGSpec(seed=4, study_uid=good_spec.study_uid))
        for key, value in changes.items():
            if value is None:
                del ds[key]
            else:
                setattr(ds, key, value)
        sop = changes.get("SOPInstanceUID") or ds.get("SOPInstanceUID") or generate_uid()
        return _write_raw(tmp_path / f"{name}.dcm", MG_FOR_PRESENTATION, str(sop), _encoded(ds))

    fresh = generate_uid()
    cases = [
        # truncated re-send of an instance already stored: must not touch the stored copy
        (_write_raw(tmp_path / "trunc.dcm", MG_FOR_PRESENTATION, uid, body[:-1000]), 0xC210),
        (
            _write_raw(tmp_path / "junk.dcm", MG_FOR_PRESENTATION, fresh, bytes(range(256)) * 8),
            0xC210,
        ),
        (variant("no_sop", SOPInstanceUID=None), 0xC220),
        (variant("no_study", StudyInstanceUID=None), 0xC220),
        (variant("bad_uid", StudyInstanceUID="1.2.3/../../../etc"), 0xC221),
        (variant("long_uid", SeriesInstanceUID="1." + "2" * 70), 0xC221),
        (variant("ct", SOPClassUID=CT_IMAGE_STORAGE), 0xA900),
    ]
    mismatch = _write_raw(
        tmp_path / "mismatch.dcm", MG_FOR_PRESENTATION, generate_uid(), _encoded(good_ds)
    )
    cases.append((mismatch, 0xC222))

    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        with scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc:
            assert send_file(assoc, good).Status == statuses.SUCCESS
            stored_path = node.storage.path_of(instances(node)[0].path)
            stored_bytes = stored_path.read_bytes()
            for path, expected in cases:
                rsp = send_file(assoc, path)
                assert rsp.Status == expected, f"{path.name}: 0x{rsp.Status:04X}"
                assert rsp.ErrorComment, path.name
                assert assoc.is_established, f"association lost after {path.name}"
            # the association still stores good data after all the bad
            other = write_mg(tmp_path / "other.dcm", MGSpec(seed=5))
            assert send_file(assoc, other).Status == statuses.SUCCESS
        assert stored_path.read_bytes() == stored_bytes
        assert count(node, Instance) == 2
        assert study(node, good_spec.study_uid).received_rev == 1
        assert not (node.storage.root.parent / "etc").exists()
        assert sorted(p.name for p in node.storage.root.iterdir() if p.is_dir()) == sorted(
            [".incoming", good_spec.study_uid, dcmread(other).StudyInstanceUID]
        )


def test_missing_uid_names_the_offending_element(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    from db.session import upgrade

    upgrade(url)
    ds = mg_dataset(MGSpec())
    del ds.SeriesInstanceUID
    path = _write_raw(tmp_path / "x.dcm", MG_FOR_PRESENTATION, ds.SOPInstanceUID, _encoded(ds))
    with (
        running_node(node_settings(tmp_path, url), sweeper=False) as node,
        scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc,
    ):
        rsp = send_file(assoc, path)
    assert rsp.Status == statuses.CANNOT_UNDERSTAND_MISSING_UID
    offending = rsp.OffendingElement
    assert int(offending if rsp["OffendingElement"].VM == 1 else offending[0]) == 0x0020000E


def test_unknown_calling_ae_is_rejected(tmp_path: Path, database_url: str) -> None:
    path = write_mg(tmp_path / "a.dcm")
    settings = node_settings(tmp_path, database_url, allowed_calling_aets="MODALITY1,PACS")
    with running_node(settings, sweeper=False) as node:
        assert storescu(node.address[1], [path], calling="INTRUDER") != 0
        assert count(node, Instance) == 0
        assert storescu(node.address[1], [path], calling="PACS") == 0
        assert count(node, Instance) == 1


def test_called_ae_title_must_match_when_configured(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    from db.session import upgrade

    upgrade(url)
    with running_node(node_settings(tmp_path, url, check_called_aet=True), sweeper=False) as node:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        wrong = ae.associate("127.0.0.1", node.address[1], ae_title="SOMEONE_ELSE")
        assert wrong.is_rejected
        right = ae.associate("127.0.0.1", node.address[1], ae_title="SGC_NODE")
        assert right.is_established and right.send_c_echo().Status == 0
        right.release()


def test_storage_below_watermark_answers_a700_and_keeps_serving(
    tmp_path: Path, database_url: str
) -> None:
    first, second = write_mg(tmp_path / "1.dcm", MGSpec(seed=1)), write_mg(tmp_path / "2.dcm")
    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        with scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc:
            assert send_file(assoc, first).Status == statuses.SUCCESS
            node.storage.min_free_mb = node.storage.free_bytes() // (1024 * 1024) + 1024
            rsp = send_file(assoc, second)
            assert rsp.Status == statuses.OUT_OF_RESOURCES, hex(rsp.Status)
            assert assoc.is_established
            node.storage.min_free_mb = 0
            assert send_file(assoc, second).Status == statuses.SUCCESS
        assert count(node, Instance) == 2


def test_unwritable_storage_answers_a700(tmp_path: Path, database_url: str) -> None:
    spec = MGSpec()
    path = write_mg(tmp_path / "1.dcm", spec)
    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        # A file where the study's directory must go: no mkdir can succeed, even as root.
        (node.storage.root / spec.study_uid).write_bytes(b"in the way")
        with scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc:
            rsp = send_file(assoc, path)
            assert rsp.Status == statuses.OUT_OF_RESOURCES
            assert assoc.is_established
            assert send_file(assoc, write_mg(tmp_path / "2.dcm")).Status == statuses.SUCCESS
        assert count(node, Instance) == 1
        assert not any(node.storage.incoming.iterdir())


def test_database_down_answers_processing_failure(tmp_path: Path) -> None:
    from tests.conftest import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    path = write_mg(tmp_path / "1.dcm")
    with (
        running_node(node_settings(tmp_path, url), sweeper=False) as node,
        scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc,
    ):
        rsp = send_file(assoc, path)
        assert rsp.Status == statuses.PROCESSING_FAILURE
        assert assoc.is_established


@pytest.mark.parametrize("same_instances", [False, True], ids=["distinct", "overlapping"])
def test_concurrent_associations_land_exactly_once(
    tmp_path: Path, database_url: str, same_instances: bool
) -> None:
    """4 storescu processes x 25 instances; overlapping: all four send the same 25."""
    folders = []
    for sender in range(1 if same_instances else 4):
        folders.append(write_study(tmp_path / f"s{sender}", n=25, rows=64, cols=48))
    batches = folders * 4 if same_instances else folders
    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        codes: list[int] = []
        threads = [
            threading.Thread(target=lambda b=b: codes.append(storescu(node.address[1], b)))
            for b in batches
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [0, 0, 0, 0]
        rows = instances(node)
        expected = {dcmread(p).SOPInstanceUID for batch in folders for p in batch}
        assert len(rows) == len(expected) == (25 if same_instances else 100)
        assert {r.sop_instance_uid for r in rows} == expected
        files = [p for p in node.storage.root.rglob("*.dcm")]
        assert len(files) == len(expected)
        for r in rows:
            assert r.sha256 == dataset_digest(node.storage.path_of(r.path))
        assert {study(node, dcmread(b[0]).StudyInstanceUID).received_rev for b in folders} == {25}
        assert count(node, Job) == 0


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    import ssl

    from db.session import upgrade
    from tests.helpers.tls import self_signed

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    node_cert, node_key = self_signed(tmp_path, "node")
    client_cert, client_key = self_signed(tmp_path, "client")
    settings = node_settings(
        tmp_path, url, tls_cert=node_cert, tls_key=node_key, tls_ca=client_cert
    )
    path = write_mg(tmp_path / "a.dcm")

    def client(with_cert: bool):
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(node_cert))
        if with_cert:
            context.load_cert_chain(str(client_cert), str(client_key))
        ae = AE(ae_title="TLSSCU")
        ae.add_requested_context(MG_FOR_PRESENTATION, [ExplicitVRLittleEndian])
        return ae.associate(
            "127.0.0.1", node.address[1], ae_title="SGC_NODE", tls_args=(context, "127.0.0.1")
        )

    with running_node(settings, sweeper=False) as node:
        assoc = client(with_cert=True)
        assert assoc.is_established
        assert assoc.send_c_store(dcmread(path)).Status == statuses.SUCCESS
        assoc.release()
        assert not client(with_cert=False).is_established
        assert count(node, Instance) == 1


def test_sgc_scp_command_migrates_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import sys
    import time

    from tests.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(SGC_DATA_DIR=str(tmp_path / "data"), SGC_HOST="127.0.0.1", SGC_PORT=str(port))
    env["SGC_MIN_FREE_MB"] = "0"
    sgc = Path(sys.executable).with_name("sgc")
    proc = subprocess.Popen([str(sgc), "scp"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        echo = [require_binary("echoscu"), "-aec", "SGC_NODE", "127.0.0.1", str(port)]
        deadline = time.monotonic() + 60
        while subprocess.run(echo, capture_output=True).returncode != 0:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "sgc scp did not start listening"
            time.sleep(0.2)
        assert storescu(port, [write_mg(tmp_path / "a.dcm")]) == 0
        assert list((tmp_path / "data" / "storage").rglob("*.dcm"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "shutting down" in stderr and "Test^Patient" not in stderr


def test_rows_digested_with_sha256_before_0004_stay_unchanged_on_a_resend(
    database_url: str, tmp_path: Path
) -> None:
    """Upgraded in place: old rows read ``sha256``; an identical re-send keeps the study as is."""
    spec = MGSpec(seed=4, rows=64, cols=48)
    source = write_mg(tmp_path / "sent.dcm", spec)
    storage = Storage(tmp_path / "store", fsync=False)
    storage.prepare()
    relpath = f"{spec.study_uid}/{spec.series_uid}/{spec.sop_instance_uid}.dcm"
    storage.path_of(relpath).parent.mkdir(parents=True)
    storage.path_of(relpath).write_bytes(source.read_bytes())
    command.downgrade(alembic_config(database_url), "0002")
    engine = make_engine(database_url)
    t = {"t": "2026-11-30 00:00:00"}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO study (id, study_uid, first_received_at, last_received_at, "
                "received_rev, jobbed_rev) VALUES (1, :s, :t, :t, 1, 1)"
            ),
            {**t, "s": spec.study_uid},
        )
        conn.execute(
            text(
                "INSERT INTO instance (study_id, series_uid, sop_instance_uid, sop_class_uid, "
                "transfer_syntax_uid, path, size, sha256, calling_aet, classifiable, "
                "received_at, updated_at) VALUES (1, :se, :sop, :c, :ts, :p, 1, :h, 'A', "
                ":y, :t, :t)"
            ),
            {
                **t,
                "se": spec.series_uid,
                "sop": spec.sop_instance_uid,
                "c": MG_FOR_PRESENTATION,
                "ts": ExplicitVRLittleEndian,
                "p": relpath,
                "h": dataset_digest(source, "sha256"),
                "y": True,
            },
        )
    engine.dispose()
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        assert s.scalars(select(Instance)).one().digest_algorithm == "sha256"
    meta = file_meta(MG_FOR_PRESENTATION, spec.sop_instance_uid, ExplicitVRLittleEndian, "A")
    stored = storage.store(source, dataset_offset(source), meta, spec.study_uid, spec.series_uid)
    assert stored.outcome == "unchanged" and stored.algorithm == "blake3"
    item = ReceivedInstance(
        study_uid=spec.study_uid,
        series_uid=spec.series_uid,
        sop_instance_uid=spec.sop_instance_uid,
        sop_class_uid=MG_FOR_PRESENTATION,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        calling_aet="A",
        classifiable=True,
        skip_reason=None,
    )
    assert record_instance(sessions, item, stored) == "unchanged"
    with sessions() as s:
        row = s.scalars(select(Instance)).one()
        assert (row.sha256, row.digest_algorithm) == (stored.digest, "blake3")
        assert s.get(Study, row.study_id).received_rev == 1  # no new revision, no new job
    engine.dispose()
