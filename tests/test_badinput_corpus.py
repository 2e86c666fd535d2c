"""The bad-input corpus: every malformed sender case gets one defined outcome.

Each case is sent through the real SCP over loopback (pynetdicom sending the bytes as they
are, or dcmtk storescu) and must get either the one DIMSE status that names its cause, or be
stored and then, in the worker's real classification path (tiny model), come out as a
Prediction without a class whose reason says why. Nothing may crash, and no file may land
outside the storage root. docs/reliability.md holds the table.

Cases already covered elsewhere and not repeated here: missing UIDs (0xC220), SOP Instance
UID mismatch (0xC222), junk bytes and a truncated re-send (0xC210) and duplicated instances
with different content (stored file replaced, study revision bumped, re-classified):
tests/test_scp_store.py::test_bad_inputs_get_precise_statuses_and_harm_nothing and
::test_pynetdicom_scu_and_resend_idempotency.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)
from pynetdicom import AE, _config
from sqlalchemy import select

from db.models import Instance, Job, Prediction, Study
from db.session import upgrade
from scp import statuses
from scp.settle import settle_studies
from scp.storage import file_meta
from tests.helpers.mg import MG_FOR_PRESENTATION, MGSpec, mg_dataset, write_mg
from tests.helpers.nodeproc import storescu
from tests.helpers.scpnode import node_settings, running_node, scu_association, send_file
from worker import classify, lease
from worker.runtime import classifier_for, sessions_for

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the bad values are the point

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STORED = statuses.SUCCESS


def encode(ds: Dataset, implicit: bool = False) -> bytes:
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


def part10(
    path: Path, body: bytes, sop: str, ts: str = ExplicitVRLittleEndian, sop_class: str = ""
) -> Path:
    """A Part 10 file whose meta says ``ts``/``sop`` and whose dataset bytes are ``body``."""
    buf = io.BytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, file_meta(sop_class or MG_FOR_PRESENTATION, sop, ts))
    path.write_bytes(buf.getvalue() + body)
    return path


@pytest.fixture
def exact_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the pynetdicom SCU send every byte after the File Meta group (by its group
    length); its own split reads elements and would swallow a 1-byte dataset."""
    from pynetdicom import association
    from pynetdicom.dsutils import split_dataset

    def split(path: Path):
        meta, _ = split_dataset(path)
        head = Path(path).read_bytes()[:144]
        return meta, 144 + int.from_bytes(head[140:144], "little")

    monkeypatch.setattr(association, "split_dataset", split)


def mg(**changes: object) -> Dataset:
    """A valid MG dataset (its own study) with ``changes`` applied (None deletes)."""
    ds = mg_dataset(MGSpec(seed=7))
    for key, value in changes.items():
        if value is None:
            del ds[key]
        else:
            setattr(ds, key, value)
    return ds


@dataclass(frozen=True)
class Case:
    """One corpus entry: how to build it, the status it must get, what the worker records."""

    name: str
    build: Callable[[Path], Path]
    status: int
    # For stored cases: None = classified; otherwise a word the Prediction's reason contains.
    reason: str | None = None


def _truncated_header(d: Path) -> Path:
    ds = mg()
    return part10(d / "trunc_header.dcm", encode(ds)[:40], ds.SOPInstanceUID)


def _truncated_pixels(d: Path) -> Path:
    ds = mg()
    return part10(d / "trunc_pixels.dcm", encode(ds)[:-5000], ds.SOPInstanceUID)


def _one_byte(d: Path) -> Path:
    return part10(d / "one_byte.dcm", b"\x08", generate_uid())


def _empty(d: Path) -> Path:
    return part10(d / "empty.dcm", b"", generate_uid())


def _wrong_meta(d: Path) -> Path:
    """Meta (and so the presentation context) says Explicit VR; the bytes are Implicit VR."""
    ds = mg()
    return part10(d / "wrong_meta.dcm", encode(ds, implicit=True), ds.SOPInstanceUID)


def _missing_meta(d: Path) -> Path:
    """A bare dataset without File Meta (storescu -f reads it); the node writes its own."""
    path = d / "missing_meta.dcm"
    path.write_bytes(encode(mg(), implicit=True))
    return path


def _undecodable_pixels(d: Path) -> Path:
    """JPEG 2000 context, well-formed fragments, but the codestream is garbage."""
    ds = mg()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 40])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return part10(d / "undecodable.dcm", encode(ds), ds.SOPInstanceUID, JPEG2000Lossless)


def _pixel_length_mismatch(d: Path) -> Path:
    ds = mg()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return part10(d / "short_pixels.dcm", encode(ds), ds.SOPInstanceUID)


def _zero_size(d: Path) -> Path:
    ds = mg(Rows=0, Columns=0)
    ds.PixelData = b""
    return part10(d / "zero.dcm", encode(ds), ds.SOPInstanceUID)


def _declared_30000(d: Path) -> Path:
    """Rows = Columns = 30000 (1.8 GB if believed) over 98 KB of real pixel data."""
    ds = mg(Rows=30000, Columns=30000)
    return part10(d / "huge_declared.dcm", encode(ds), ds.SOPInstanceUID)


def _huge_private(d: Path) -> Path:
    """A 24 MiB private OB element before the pixel data."""
    ds = mg()
    block = ds.private_block(0x0029, "SGC TEST BLOB", create=True)
    block.add_new(0x01, "OB", b"\xab" * (24 << 20))
    return part10(d / "huge_private.dcm", encode(ds), ds.SOPInstanceUID)


def _non_ascii(d: Path) -> Path:
    ds = mg(SpecificCharacterSet="ISO_IR 192", PatientName="山田^花子=やまだ^はなこ")
    ds.StudyDescription = "Mammographie dépistage – Ærøskøbing"
    return part10(d / "utf8.dcm", encode(ds), ds.SOPInstanceUID)


def _malformed_charset(d: Path) -> Path:
    """An unknown Specific Character Set with bytes that are not valid in any default."""
    ds = mg(SpecificCharacterSet="ISO_IR 999")
    ds["PatientName"].value = b"\xff\xfe\x81^\xc3("
    return part10(d / "bad_charset.dcm", encode(ds), ds.SOPInstanceUID)


def _uid_case(name: str, **uids: str) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        ds = mg(**uids)
        return part10(d / f"{name}.dcm", encode(ds), str(ds.SOPInstanceUID))

    return build


def _sop_class_mismatch(d: Path) -> Path:
    ds = mg(SOPClassUID=CT_IMAGE_STORAGE)
    return part10(d / "class_mismatch.dcm", encode(ds), ds.SOPInstanceUID)


LONG_UID = "1." + ".".join(["123456789"] * 22)  # 200 characters, valid syntax, too long

SCP_CASES = [
    Case("truncated in the header", _truncated_header, statuses.CANNOT_UNDERSTAND_UNDECODABLE),
    Case("truncated in the pixel data", _truncated_pixels, 0xC210),
    Case("1-byte dataset", _one_byte, 0xC210),
    Case("empty dataset (0 bytes)", _empty, statuses.CANNOT_UNDERSTAND_MISSING_UID),
    Case("wrong file meta (implicit bytes, explicit context)", _wrong_meta, 0xC210),
    Case("SOP Class UID differs from the context", _sop_class_mismatch, 0xA900),
    Case(
        "Study UID ../../../../tmp/sgc-evil",
        _uid_case("traversal_study", StudyInstanceUID="../../../../tmp/sgc-evil"),
        0xC221,
    ),
    Case(
        "Series UID /tmp/sgc-evil (absolute)",
        _uid_case("absolute_series", SeriesInstanceUID="/tmp/sgc-evil"),
        0xC221,
    ),
    Case("SOP Instance UID ..", _uid_case("dotdot_sop", SOPInstanceUID=".."), 0xC221),
    Case(
        "SOP Instance UID 1.2/../../x",
        _uid_case("traversal_sop", SOPInstanceUID="1.2/../../x"),
        0xC221,
    ),
    Case("200-character UID", _uid_case("long_uid", StudyInstanceUID=LONG_UID), 0xC221),
    Case("undecodable pixel data (J2K)", _undecodable_pixels, STORED, "decode"),
    Case("pixel data shorter than rows x columns", _pixel_length_mismatch, STORED, "pixel"),
    Case("0 x 0 image", _zero_size, STORED, "zero-size"),
    Case("30000 x 30000 declared", _declared_30000, STORED, "pixel"),
    Case("24 MiB private element", _huge_private, STORED),
    Case("non-ASCII names (ISO_IR 192)", _non_ascii, STORED),
    Case("malformed character set", _malformed_charset, STORED),
]


@contextlib.contextmanager
def mg_association(port: int) -> Iterator:
    """One association with an MG context per transfer syntax the corpus uses."""
    ae = AE(ae_title="FUZZSCU")
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless):
        ae.add_requested_context(MG_FOR_PRESENTATION, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title="SGC_NODE")
    assert assoc.is_established
    previous, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        yield assoc
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        if assoc.is_established:
            assoc.release()


def _classify_all(settings) -> dict[str, Prediction]:
    """Settle every stored study and run its job in this process, as a worker would."""
    sessions = sessions_for(settings)
    settle_studies(sessions, stable_age=0.0)
    classifier = classifier_for(settings)
    with sessions() as s:
        job_ids = list(s.scalars(select(Job.id)))
    for job_id in job_ids:
        token = lease.claim(sessions, job_id, 60.0)
        assert token is not None
        try:
            classify.run(sessions, settings, classifier, job_id, token)
        except classify.PermanentJobError as exc:
            lease.fail(sessions, job_id, token, str(exc))
    with sessions() as s:
        return {
            p.instance.sop_instance_uid: p
            for p in s.scalars(select(Prediction).join(Prediction.instance))
        }


def test_corpus_gets_defined_outcomes(
    tmp_path: Path, tiny_model: Path, exact_split, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    url = f"sqlite:///{tmp_path / 'sgc.db'}"
    upgrade(url)
    settings = node_settings(tmp_path, url, model=tiny_model, device="cpu")
    built = [(case, case.build(corpus)) for case in SCP_CASES]
    stored: dict[str, Case] = {}
    with running_node(settings, sweeper=False) as node:
        with mg_association(node.address[1]) as assoc:
            for case, path in built:
                rsp = send_file(assoc, path)
                assert rsp.Status == case.status, f"{case.name}: 0x{rsp.Status:04X}"
                assert assoc.is_established, f"association lost after {case.name}"
                if case.status != STORED:
                    assert rsp.ErrorComment, case.name
                else:
                    stored[dcmread(path, force=True).SOPInstanceUID] = case
        missing = _missing_meta(corpus)
        run = storescu(node.address[1], [missing], "-f")
        assert run.succeeded == [missing], run.output
        stored[dcmread(missing, force=True).SOPInstanceUID] = Case(
            "missing file meta (storescu -f)", _missing_meta, STORED
        )
        storage = node.storage.root
        with node.session_factory() as s:
            rows = {r.sop_instance_uid: r for r in s.scalars(select(Instance))}
    # Every ErrorComment is one LO value (a backslash would split it: "VM 3").
    assert "Non-conformant VM" not in caplog.text
    assert set(rows) == set(stored), "exactly the accepted cases are recorded"
    for sop, row in rows.items():
        stored_file = dcmread(storage / row.path, stop_before_pixels=True)
        assert stored_file.file_meta.MediaStorageSOPInstanceUID == sop  # the node's own meta

    predictions = _classify_all(settings)
    for sop, case in stored.items():
        pred = predictions[sop]
        print(f"{case.name}: {pred.predicted_class or pred.extra.get('error')}")
        if case.reason is None:
            assert pred.predicted_class is not None, f"{case.name}: {pred.extra}"
        else:
            assert pred.predicted_class is None, case.name
            assert case.reason in pred.extra["error"].lower(), f"{case.name}: {pred.extra}"

    # Nothing outside the storage root: only the corpus, the database and the storage exist.
    outside = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and storage not in p.parents and corpus not in p.parents
        and not p.name.startswith("sgc.db")
    ]  # fmt: skip
    assert outside == [], outside
    assert not Path("/tmp/sgc-evil").exists()


NON_MAMMOGRAPHY = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "reportsi.dcm"]


@pytest.mark.parametrize("accept_other", [False, True], ids=["default", "accept-other"])
def test_non_mammography_sop_classes(tmp_path: Path, accept_other: bool) -> None:
    """pydicom's bundled CT, MR, RT Plan, RT Dose and SR files, sent with dcmtk storescu: by
    default every context is rejected (abstract syntax not supported) and nothing is stored;
    with SGC_ACCEPT_OTHER_STORAGE they are stored, not classified, with the reason, no job."""
    url = f"sqlite:///{tmp_path / 'sgc.db'}"
    upgrade(url)
    files = [Path(get_testdata_file(name)) for name in NON_MAMMOGRAPHY]
    settings = node_settings(tmp_path, url, accept_other_storage=accept_other)
    with running_node(settings, sweeper=False) as node:
        if accept_other:
            run = storescu(node.address[1], files)
            assert run.returncode == 0 and run.succeeded == files, run.output
        else:
            for path in files:  # one association each: storescu stops at the first refusal
                run = storescu(node.address[1], [path])
                assert run.returncode != 0 and not run.responses
                assert "No presentation context" in run.output, run.output
            ae = AE(ae_title="PROBE")
            ae.add_requested_context(CT_IMAGE_STORAGE)
            probe = ae.associate("127.0.0.1", node.address[1], ae_title="SGC_NODE")
            assert [cx.result for cx in probe.rejected_contexts] == [0x03]  # not supported
            assert not probe.is_established
        settle_studies(node.session_factory, stable_age=0.0)
        with node.session_factory() as s:
            rows = list(s.scalars(select(Instance)))
            n_jobs = len(list(s.scalars(select(Job))))
            n_studies = len(list(s.scalars(select(Study))))
    if accept_other:
        assert len(rows) == len(files) and n_jobs == 0 and n_studies >= 1
        for row in rows:
            assert not row.classifiable and "not mammography" in row.skip_reason
    else:
        assert rows == [] and n_studies == 0


def test_valid_mammogram_control(tmp_path: Path) -> None:
    """The corpus's base image is itself valid: what fails above fails for its defect."""
    path = write_mg(tmp_path / "ok.dcm", MGSpec(seed=7))
    url = f"sqlite:///{tmp_path / 'sgc.db'}"
    upgrade(url)
    with (
        running_node(node_settings(tmp_path, url), sweeper=False) as node,
        scu_association(node.address[1], [ExplicitVRLittleEndian]) as assoc,
    ):
        assert send_file(assoc, path).Status == STORED
