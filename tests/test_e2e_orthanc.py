"""End to end as a user lives it: `sgc serve`, Orthanc pushes a study, the SR comes back.

Orthanc (DICOMweb + GDCM) holds a synthetic 4-view study with one JPEG 2000 view and one
MONOCHROME1 view and pushes it to the node (`POST /modalities/sgc/store`). The node, started
with `sgc serve` exactly as `make run` does, classifies it and stores the SR back in Orthanc.
The SR's references and values must equal what `sgc status --json` reports; the metrics must
have counted it; the logs must not name the patient; one SIGINT must stop every process.
Run on the embedded default (SQLite + filesystem broker) and on Redis + PostgreSQL; the
embedded run also opens the SR in OHIF.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import psycopg
import pytest
from pydicom.uid import JPEG2000Lossless

from sgc_core.synth import SynthConfig, generate_study
from tests.conftest import PG_ADMIN_URL, free_port
from tests.helpers.ohif import ARTIFACTS, ohif_viewer, show_sr_in_ohif
from tests.helpers.orthanc import orthanc_server
from worker.reports import PROBABILITY_OF_CANCER, SERIES_DESCRIPTION

pytestmark = [pytest.mark.orthanc, pytest.mark.slow]
WAIT = 240.0


def synthetic_study() -> list:
    """Four views of one phantom; view 1 JPEG 2000 lossless, view 3 MONOCHROME1."""
    config = SynthConfig.for_size("small", difficulty=0.3)
    plain = generate_study(11, config)
    inverted = generate_study(
        11, SynthConfig.for_size("small", difficulty=0.3, monochrome1_fraction=1.0)
    )
    views = [plain[0], plain[1], plain[2], inverted[3]]
    assert views[3].PhotometricInterpretation == "MONOCHROME1"
    views[1].compress(JPEG2000Lossless)
    return views


@pytest.fixture(params=["embedded", "redis+postgresql"])
def backend(request) -> Iterator[dict[str, str]]:
    if request.param == "embedded":
        yield {}
        return
    name = f"sgc_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    prefix = uuid.uuid4().hex[:8]
    yield {
        "SGC_DATABASE_URL": f"{base}/{name}",
        "SGC_BROKER_URL": f"redis://127.0.0.1:6379/14?global_keyprefix=e2e-{prefix}-",
    }
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (from /proc)."""
    found, frontier = set(), {pid}
    while frontier:
        out = subprocess.run(
            ["pgrep", "-P", ",".join(map(str, frontier))], capture_output=True, text=True
        ).stdout.split()
        frontier = {int(x) for x in out} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}/stat").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def test_orthanc_round_trip_through_sgc_serve(
    backend: dict[str, str], tiny_model: Path, tmp_path: Path, request
) -> None:
    node_port, metrics_port = free_port(), free_port()
    views = synthetic_study()
    study_uid = views[0].StudyInstanceUID
    patient = (str(views[0].PatientName), str(views[0].PatientID))
    with orthanc_server(
        tmp_path / "orthanc", modalities={"sgc": ("SGC_NODE", "127.0.0.1", node_port)}
    ) as orthanc:
        for ds in views:
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            orthanc.request("POST", "/instances", buf.getvalue())
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
        env.update(
            SGC_DATA_DIR=str(tmp_path / "data"),
            SGC_HOST="127.0.0.1",
            SGC_PORT=str(node_port),
            SGC_ARCHIVE=orthanc.node,
            SGC_MODEL=str(tiny_model),
            SGC_STABLE_AGE="1",
            SGC_SWEEP_INTERVAL="0.2",
            SGC_MIN_FREE_MB="0",
            SGC_METRICS_PORT=str(metrics_port),
            SGC_LOG_JSON="true",
            **backend,
        )
        log_path = tmp_path / "serve.log"
        with open(log_path, "wb") as log:
            serve = subprocess.Popen(
                [sys.executable, "-m", "sgc_node", "serve"], env=env, stdout=log, stderr=log
            )
        try:
            _wait_port(node_port, serve, log_path)
            (orthanc_study,) = orthanc.request(
                "POST", "/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}
            )
            orthanc.request(
                "POST", "/modalities/sgc/store", {"Resources": [orthanc_study], "Synchronous": True}
            )
            deadline = time.monotonic() + WAIT
            while not orthanc.sr_instances(study_uid):
                assert serve.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, (
                    "no SR in Orthanc:\n" + log_path.read_text()[-3000:]
                )
                time.sleep(0.5)

            status = json.loads(
                subprocess.run(
                    [sys.executable, "-m", "sgc_node", "status", "--json", "--study", study_uid],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            (study,) = status["studies"]
            _check_sr_against_status(orthanc, study, tmp_path)
            metrics = _scrape(metrics_port)
            assert 'sgc_c_store_total{status="0x0000"} 4.0' in metrics
            assert 'sgc_jobs{state="done"} 1.0' in metrics
            assert "sgc_classification_seconds_count 1.0" in metrics
            if request.node.callspec.params["backend"] == "embedded":
                with ohif_viewer(orthanc.url) as url:
                    text = show_sr_in_ohif(
                        url, study_uid, SERIES_DESCRIPTION, ARTIFACTS / "e2e-ohif-sr.png"
                    )
                assert "Probability of cancer:" in text
        finally:
            family = _children(serve.pid)
            serve.send_signal(signal.SIGINT)
            code = serve.wait(60)
        assert code == 0, log_path.read_text()[-3000:]
        assert family and not any(_alive(pid) for pid in family), "orphaned node processes"
        logs = log_path.read_text()
        for identifier in patient:
            assert identifier not in logs, "a patient identifier leaked into the logs"
        for line in logs.splitlines():
            if line.startswith("{"):
                json.loads(line)  # SGC_LOG_JSON: one JSON object per line


def _check_sr_against_status(orthanc, study: dict, tmp_path: Path) -> None:
    job = study["job"]
    assert job["state"] == "done" and study["instances"] == 4
    (report,) = job["reports"]
    (delivery,) = report["deliveries"]
    assert delivery["state"] == "sent" and delivery["last_status"] == 0
    (inst,) = orthanc.sr_instances(study["study_uid"])
    assert inst["MainDicomTags"]["SOPInstanceUID"] == report["sop_instance_uid"]
    path = tmp_path / "sr.dcm"
    path.write_bytes(orthanc.file_of(inst["ID"]))
    doc = hd.sr.srread(path)
    assert doc.StudyInstanceUID == study["study_uid"]
    in_sr = {}
    for group in doc.content.get_planar_roi_measurement_groups():
        ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        (m,) = group.get_measurements(name=PROBABILITY_OF_CANCER)
        in_sr[ref] = (float(m.value), group.finding_type.meaning.lower())
    expected = {
        p["sop_instance_uid"]: (100 * p["probabilities"]["malignant"], p["predicted_class"])
        for p in job["predictions"]
    }
    assert set(in_sr) == set(expected) and len(expected) == 4
    for uid, (value, finding) in in_sr.items():
        assert value == pytest.approx(expected[uid][0], abs=0.01)
        assert finding == expected[uid][1]


def _wait_port(port: int, proc: subprocess.Popen, log_path: Path) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the node did not open its DICOM port:\n" + log_path.read_text()[-3000:])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()
