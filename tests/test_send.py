"""`sgc send` against dcmtk's storescp (a real SCP): files arrive, failures are clear."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import free_port, require_binary
from tests.helpers.mg import MGSpec, write_mg
from tests.helpers.nodeproc import port_open, wait_until


def _sgc(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    return subprocess.run(
        [sys.executable, "-m", "sgc_node", *args], capture_output=True, text=True, env=env
    )


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [require_binary("storescp"), "+xa", "-aet", "PEER", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: port_open(port), "storescp to listen", 30, [proc])
    yield port, out
    proc.terminate()
    proc.wait(10)


def test_send_folder_delivers_every_instance(storescp, tmp_path: Path) -> None:
    port, out = storescp
    src = tmp_path / "study"
    for i, (lat, view) in enumerate([("L", "CC"), ("R", "CC"), ("L", "MLO")]):
        write_mg(src / f"{i}.dcm", MGSpec(laterality=lat, view=view, seed=i, j2k=(i == 2)))
    uids = {dcmread(p).SOPInstanceUID for p in src.iterdir()}
    result = _sgc("send", str(src), "--to", f"PEER@127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert "sent 3, failed 0, skipped 0" in result.stdout
    received = {dcmread(p).SOPInstanceUID for p in out.iterdir()}
    assert received == uids


def test_non_dicom_files_are_skipped_and_reported(storescp, tmp_path: Path) -> None:
    port, out = storescp
    write_mg(tmp_path / "a.dcm", MGSpec())
    (tmp_path / "notes.txt").write_text("not dicom")
    result = _sgc(
        "send",
        str(tmp_path / "a.dcm"),
        str(tmp_path / "notes.txt"),
        "--to",
        f"PEER@127.0.0.1:{port}",
    )
    assert result.returncode == 1
    assert "skipped" in result.stderr and "notes.txt: not a DICOM Part 10 file" in result.stderr
    assert len(list(out.iterdir())) == 1


def test_unaccepted_transfer_syntax_is_reported_per_file(tmp_path: Path) -> None:
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    # Without +xa, storescp accepts only uncompressed syntaxes: the JPEG 2000 file must fail.
    proc = subprocess.Popen(
        [require_binary("storescp"), "-aet", "PEER", "-od", str(out), str(port)]
    )
    wait_until(lambda: port_open(port), "storescp to listen", 30, [proc])
    try:
        write_mg(tmp_path / "in" / "plain.dcm", MGSpec(seed=1))
        write_mg(tmp_path / "in" / "j2k.dcm", MGSpec(seed=2, j2k=True))
        result = _sgc("send", str(tmp_path / "in"), "--to", f"PEER@127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(10)
    assert result.returncode == 1
    assert "j2k.dcm: " in result.stderr and "accepts no context" in result.stderr
    assert "sent 1, failed 1" in result.stdout


@pytest.mark.parametrize(
    ("to", "message"),
    [("nobody", "is not of the form AET@host:port"), ("PEER@127.0.0.1:{closed}", "failed")],
)
def test_bad_destination_is_a_clear_error(tmp_path: Path, to: str, message: str) -> None:
    write_mg(tmp_path / "a.dcm", MGSpec())
    result = _sgc("send", str(tmp_path / "a.dcm"), "--to", to.format(closed=free_port()))
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = _sgc("send", str(tmp_path / "nope"), "--to", "PEER@127.0.0.1:104")
    assert result.returncode == 1 and "no such file or folder" in result.stderr
