"""What the node gives away: no patient data in logs or metrics, loopback-only HTTP by default.

`sgc serve` (SCP + worker, tiny model) runs at DEBUG with a metrics port; a study with a
distinctive patient name, ID and birth date is classified, and a few malformed or refused
senders carrying the same patient are thrown at it. Every log line and the /metrics page must
then be free of the name (and its parts), the ID and the birth date. The e2e test checks the
name and ID in INFO logs of a normal run; this adds DEBUG, the refusal paths, the birth date
and the metrics.

The Prometheus endpoint and the OHIF viewer's HTTP server listen on 127.0.0.1 unless told
otherwise; read from the kernel's socket table (/proc/net/tcp), not from our own code.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select

from db.models import Job, JobState
from tests.conftest import free_port
from tests.helpers.mg import MG_FOR_PRESENTATION, MGSpec, write_mg, write_study
from tests.helpers.nodeproc import NodeProcesses, port_open, storescu, wait_until
from tests.helpers.scpnode import scu_association, send_file

pytestmark = pytest.mark.slow

NAME, GIVEN, PATIENT_ID, BIRTH = "Quixotezzle", "Brunhildaxq", "ZZSECRET4711", "19230417"


def _with_patient(paths: list[Path]) -> None:
    for path in paths:
        ds = dcmread(path)
        ds.PatientName = f"{NAME}^{GIVEN}"
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = BIRTH
        ds.OtherPatientIDs = PATIENT_ID
        ds.save_as(path)


def test_logs_and_metrics_hold_no_patient_data(tmp_path: Path, tiny_model: Path) -> None:
    files = write_study(tmp_path / "study", n=4, rows=96, cols=64)
    _with_patient(files)
    study_uid = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    bad = write_mg(tmp_path / "bad.dcm", MGSpec(rows=64, cols=48))
    _with_patient([bad])
    ds = dcmread(bad)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT in an MG context: refused 0xA900
    ds.file_meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    ds.save_as(bad)
    metrics_port = free_port()
    node = NodeProcesses.create(
        tmp_path / "node", port=free_port(), model=tiny_model, device="cpu", stable_age=1,
        sweep_interval=0.2, min_free_mb=0, log_level="DEBUG", metrics_port=metrics_port,
        allowed_calling_aets="STORESCU,MODALITY",
    )  # fmt: skip
    try:
        serve = node.start("serve", "serve")
        wait_until(lambda: port_open(node.port), "sgc serve", 60, [serve])
        assert storescu(node.port, files).returncode == 0
        with scu_association(node.port, [ExplicitVRLittleEndian], calling="MODALITY") as a:
            assert send_file(a, bad).Status == 0xA900
        assert storescu(node.port, files[:1], calling="INTRUDER").returncode != 0
        sessions = node.sessions()

        def classified() -> bool:
            with sessions() as s:
                return [j.state for j in s.scalars(select(Job))] == [JobState.done]

        wait_until(classified, "the study classified", 180, [serve])
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert 'sgc_jobs{state="done"} 1.0' in metrics
    except BaseException:
        print(node.logs())
        raise
    finally:
        node.stop_all()
    logs = node.all_logs()
    assert study_uid in logs and "DEBUG" in logs  # the logs do talk about the study
    for secret in (NAME, GIVEN, PATIENT_ID, BIRTH, "1923-04-17"):
        assert secret not in logs, f"{secret} leaked into the logs"
        assert secret not in metrics, f"{secret} leaked into the metrics"


def _listening(port: int) -> set[str]:
    """Addresses (hex, as in /proc/net/tcp{,6}) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hexport = fields[1].rsplit(":", 1)
            if int(hexport, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


LOOPBACK = "0100007F"  # 127.0.0.1, little endian
ANY = "00000000"


@pytest.mark.parametrize("configured", [None, "0.0.0.0"], ids=["default", "configured"])
def test_metrics_endpoint_binds_loopback_unless_configured(
    tmp_path: Path, configured: str | None
) -> None:
    port = free_port()
    extra = {"metrics_host": configured} if configured else {}
    node = NodeProcesses.create(
        tmp_path / "node", port=free_port(), metrics_port=port, min_free_mb=0, **extra
    )
    try:
        scp = node.start_scp()
        wait_until(lambda: _listening(port), "the metrics endpoint", 30, [scp])
        assert _listening(port) == ({ANY} if configured else {LOOPBACK})
    finally:
        node.stop_all()


def test_viewer_binds_loopback_by_default(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgc_node", "viewer", "--port", str(port),
         "--orthanc", "http://127.0.0.1:9"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the viewer did not listen"
            time.sleep(0.1)
        assert _listening(port) == {LOOPBACK}
    finally:
        proc.terminate()
        proc.wait(10)
