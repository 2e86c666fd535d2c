"""Orthanc, a real PACS, pushes a study to the node with ``POST /modalities/{name}/store``.

Orthanc runs on free ports with its storage in tmp_path and the node registered in
``DicomModalities``; every instance must be stored and a job created after the stable age.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.conftest import free_port, require_binary
from tests.helpers.mg import write_study
from tests.helpers.scpnode import instances, jobs, node_settings, running_node, wait_for

pytestmark = pytest.mark.orthanc


class Orthanc:
    def __init__(self, http_port: int) -> None:
        self.base = f"http://127.0.0.1:{http_port}"

    def request(self, method: str, path: str, body: bytes | None = None) -> object:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=60) as rsp:
            return json.loads(rsp.read() or b"null")


@pytest.fixture
def orthanc_for(tmp_path: Path):
    """Start Orthanc knowing our node as modality ``sgc`` at the given port."""
    procs: list[subprocess.Popen] = []

    def start(node_port: int) -> Orthanc:
        http_port, dicom_port = free_port(), free_port()
        storage = tmp_path / "orthanc-storage"
        config = {
            "Name": "sgc-test-orthanc",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "DicomModalities": {"sgc": ["SGC_NODE", "127.0.0.1", node_port]},
        }
        path = tmp_path / "orthanc.json"
        path.write_text(json.dumps(config))
        log = open(tmp_path / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([require_binary("Orthanc"), str(path)], stdout=log, stderr=log)
        procs.append(proc)
        orthanc = Orthanc(http_port)
        deadline = time.monotonic() + 30
        while True:
            try:
                orthanc.request("GET", "/system")
                return orthanc
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "Orthanc did not start: " + (tmp_path / "orthanc.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.1)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("j2k", [False, True], ids=["uncompressed", "jpeg2000"])
def test_orthanc_pushes_a_study(tmp_path: Path, orthanc_for, j2k: bool, database_url: str) -> None:
    files = write_study(tmp_path / "study", n=4, j2k=j2k)
    study_uid = dcmread(files[0]).StudyInstanceUID
    # stable age 2 s: longer than any gap between two instances of one push
    with running_node(node_settings(tmp_path, database_url, stable_age=2.0)) as node:
        orthanc = orthanc_for(node.address[1])
        for f in files:
            orthanc.request("POST", "/instances", f.read_bytes())
        [orthanc_study] = orthanc.request("GET", "/studies")
        result = orthanc.request("POST", "/modalities/sgc/store", orthanc_study.encode())
        assert result["FailedInstancesCount"] == 0 and result["InstancesCount"] == 4
        rows = instances(node)
        assert {r.sop_instance_uid for r in rows} == {dcmread(f).SOPInstanceUID for f in files}
        assert all(r.calling_aet == "ORTHANC" for r in rows)
        for f, r in zip(
            sorted(files, key=lambda f: dcmread(f).SOPInstanceUID),
            sorted(rows, key=lambda r: r.sop_instance_uid),
            strict=True,
        ):
            assert dcmread(node.storage.path_of(r.path)).PixelData == dcmread(f).PixelData
        job = wait_for(lambda: jobs(node), what="a job")[0]
        assert job.revision == 4
        with node.session_factory() as s:
            from db.models import Study

            assert s.get(Study, job.study_id).study_uid == study_uid
