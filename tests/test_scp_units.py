"""The SCP's building blocks on their own: UID syntax, encoding checks, the storage writer,
the TLS context, and the test image helper itself (dciodvfy must find 0 errors).
"""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)

from scp.encoding import MalformedDataset, check_encoding
from scp.handlers import dataset_offset
from scp.storage import (
    TEMP_SUFFIX,
    Storage,
    StorageFull,
    dataset_digest,
    file_meta,
    instance_relpath,
)
from scp.uids import InvalidUID, is_valid_uid, memoize_library_uid_checks, require_uid
from tests.conftest import require_binary
from tests.helpers.mg import MGSpec, mg_dataset, write_mg
from tests.helpers.tls import self_signed


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.1.1.1.2", "0", "2.25.1234", "1." + "2" * 62])
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid) and require_uid("X", uid) == uid


@pytest.mark.parametrize(
    "uid",
    ["", "1..2", "1.02", ".1", "1.", "1.2.a", "../1", "1/2", "1 2", "1." + "2" * 63, None, 12],
)
def test_invalid_uids(uid: object) -> None:
    assert not is_valid_uid(uid)
    with pytest.raises(InvalidUID, match="StudyInstanceUID"):
        require_uid("StudyInstanceUID", uid)


@given(st.text(max_size=80))
def test_a_path_is_only_ever_built_from_digits_and_dots(text: str) -> None:
    try:
        relpath = instance_relpath(text, "1.2", "1.3")
    except InvalidUID:
        return
    assert set(relpath) <= set("0123456789./cdm") and ".." not in relpath


def test_uid_with_trailing_padding_is_accepted() -> None:
    assert require_uid("X", b"1.2.3\x00") == "1.2.3"


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom.valuerep")  # pynetdicom's check warns
@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.1", "1..2", "1.02", "1." + "2" * 63, "1.2 "])
def test_memoized_library_uid_checks_answer_as_the_libraries_do(uid: str) -> None:
    """pydicom's and pynetdicom's UID checks, memoized for association negotiation, give
    the same verdict as the originals, the first time and from the cache; pydicom's RAISE
    mode still raises; an unhashable value is checked afresh; installing twice does not
    wrap twice."""
    from pydicom import config
    from pydicom import valuerep as pydicom_valuerep
    from pynetdicom import _config as pynetdicom_config

    memoize_library_uid_checks()
    memoize_library_uid_checks()
    ours = pydicom_valuerep.VALIDATORS["UI"]
    theirs = ours.__wrapped__
    assert not hasattr(theirs, "__wrapped__")
    assert ours("UI", uid) == ours("UI", uid) == theirs("UI", uid)
    assert ours("UI", [uid]) == theirs("UI", [uid])
    net = pynetdicom_config.VALIDATORS["UI"]
    assert net(uid) == net(uid) == net.__wrapped__(uid)
    if theirs("UI", uid)[0]:
        assert UID(uid, validation_mode=config.RAISE) == uid.strip()
    else:
        with pytest.raises(ValueError, match=r"for VR UI\b") as raised:
            UID(uid, validation_mode=config.RAISE)
        assert str(raised.value) == theirs("UI", uid)[1]


def _part10(tmp_path: Path, ts: str, **spec: object) -> tuple[Path, int]:
    ds = mg_dataset(MGSpec(**spec))  # type: ignore[arg-type]
    path = tmp_path / f"{ts}.dcm"
    if ts == JPEG2000Lossless:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.file_meta.TransferSyntaxUID = ts
        ds.save_as(path, enforce_file_format=True, implicit_vr=ts == ImplicitVRLittleEndian)
    return path, dataset_offset(path)


@pytest.mark.parametrize(
    "ts",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian],
)
def test_complete_datasets_pass_the_encoding_check(tmp_path: Path, ts: str) -> None:
    path, offset = _part10(tmp_path, ts)
    check_encoding(path, offset, ts)


def test_encapsulated_pixel_data_is_walked(tmp_path: Path) -> None:
    path, offset = _part10(tmp_path, JPEG2000Lossless, j2k=True)
    check_encoding(path, offset, JPEG2000Lossless)
    data = path.read_bytes()
    # drop the sequence delimiter that closes the fragments: truncated
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-8])
    with pytest.raises(MalformedDataset):
        check_encoding(cut, offset, JPEG2000Lossless)


@pytest.mark.parametrize(
    "ts",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian],
)
@pytest.mark.parametrize("keep", [0.999, 0.5, 0.1])
def test_truncated_datasets_fail_the_encoding_check(tmp_path: Path, ts: str, keep: float) -> None:
    path, offset = _part10(tmp_path, ts)
    data = path.read_bytes()
    path.write_bytes(data[: offset + int((len(data) - offset) * keep)])
    with pytest.raises(MalformedDataset):
        check_encoding(path, offset, ts)


def test_extra_bytes_after_the_dataset_fail(tmp_path: Path) -> None:
    path, offset = _part10(tmp_path, ExplicitVRLittleEndian)
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(MalformedDataset):
        check_encoding(path, offset, ExplicitVRLittleEndian)


def _spool(tmp_path: Path, spec: MGSpec) -> tuple[Path, int]:
    path = write_mg(tmp_path / f"spool-{spec.seed}.dcm", spec)
    return path, dataset_offset(path)


def test_storage_new_unchanged_replaced(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "store", fsync=True)
    storage.prepare()
    spec = MGSpec(seed=1)
    meta = file_meta(
        "1.2.840.10008.5.1.4.1.1.1.2", spec.sop_instance_uid, ExplicitVRLittleEndian, "AET"
    )
    src, offset = _spool(tmp_path, spec)
    first = storage.store(src, offset, meta, spec.study_uid, spec.series_uid)
    assert first.outcome == "new"
    target = storage.path_of(first.relpath)
    assert dcmread(target).file_meta.SourceApplicationEntityTitle == "AET"
    assert dataset_digest(target) == first.digest
    assert target.read_bytes()[-first.size :] == src.read_bytes()[offset:]

    again = storage.store(src, offset, meta, spec.study_uid, spec.series_uid)
    assert again.outcome == "unchanged" and again.digest == first.digest

    spec.seed = 2
    changed, offset2 = _spool(tmp_path, spec)
    third = storage.store(changed, offset2, meta, spec.study_uid, spec.series_uid)
    assert third.outcome == "replaced" and third.digest != first.digest
    assert dcmread(target).PixelData == dcmread(changed).PixelData
    assert list(storage.incoming.iterdir()) == []


def test_storage_watermark_and_temp_cleanup(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "store", min_free_mb=10**9)
    storage.prepare()
    (storage.incoming / f"leftover{TEMP_SUFFIX}").write_bytes(b"partial")
    assert Storage(tmp_path / "store").prepare() == 1
    spec = MGSpec()
    src, offset = _spool(tmp_path, spec)
    meta = file_meta("1.2.840.10008.5.1.4.1.1.1.2", spec.sop_instance_uid, ExplicitVRLittleEndian)
    with pytest.raises(StorageFull, match="watermark"):
        storage.store(src, offset, meta, spec.study_uid, spec.series_uid)
    assert not any(storage.root.rglob("*.dcm"))


def test_storage_refuses_invalid_uids_before_any_path(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "store")
    storage.prepare()
    spec = MGSpec()
    src, offset = _spool(tmp_path, spec)
    meta = file_meta("1.2.840.10008.5.1.4.1.1.1.2", spec.sop_instance_uid, ExplicitVRLittleEndian)
    with pytest.raises(InvalidUID):
        storage.store(src, offset, meta, "../../escape", spec.series_uid)
    assert sorted(os.listdir(tmp_path / "store")) == [".incoming"]


@pytest.mark.parametrize(
    "spec",
    [
        MGSpec(),
        MGSpec(photometric="MONOCHROME1", view="MLO", laterality="R"),
        MGSpec(for_processing=True, rows=300, cols=200),
        MGSpec(j2k=True),
    ],
    ids=["cc-mono2", "mlo-mono1", "for-processing", "jpeg2000"],
)
def test_mg_helper_writes_images_dciodvfy_accepts(tmp_path: Path, spec: MGSpec) -> None:
    path = write_mg(tmp_path / "mg.dcm", spec)
    result = subprocess.run([require_binary("dciodvfy"), str(path)], capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert errors == []
    ds = dcmread(path)
    assert (ds.Rows, ds.Columns, ds.ImageLaterality) == (spec.rows, spec.cols, spec.laterality)
    assert ds.pixel_array.shape == (spec.rows, spec.cols)


def test_server_ssl_context_requires_client_certificates_with_a_ca(tmp_path: Path) -> None:
    from scp.ae import server_ssl_context
    from sgc_config.settings import load_settings

    cert, key = self_signed(tmp_path, "node")
    assert server_ssl_context(load_settings(data_dir=tmp_path)) is None
    open_tls = server_ssl_context(load_settings(data_dir=tmp_path, tls_cert=cert, tls_key=key))
    assert open_tls is not None and open_tls.verify_mode == ssl.CERT_NONE
    mutual = server_ssl_context(
        load_settings(data_dir=tmp_path, tls_cert=cert, tls_key=key, tls_ca=cert)
    )
    assert mutual is not None and mutual.verify_mode == ssl.CERT_REQUIRED
