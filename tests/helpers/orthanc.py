"""A real Orthanc for tests: started on free ports with its own config and storage in tmp.

Why a real one: Orthanc is the archive the node delivers SRs to and the PACS that pushes studies
to it; its DICOM and REST behaviour (statuses, duplicate handling, DICOMweb) is what the tests
must meet. It starts in ~0.1 s; ``RemoteAccessAllowed: false`` keeps its HTTP on localhost.

Use :func:`orthanc_server` as a context manager, or the ``orthanc`` fixture in a test module via
``from tests.helpers.orthanc import orthanc  # noqa: F401``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.services import free_port

PLUGINS_DIR = Path("/usr/share/orthanc/plugins")

# An error raised in Orthanc's incoming-instance filter becomes C-STORE status 0xA700
# (measured with Orthanc 1.10.1); returning false instead would be a silent "success".
_REFUSE_LUA = """
function ReceivedInstanceFilter(dicom, origin, info)
  local f = io.open("@FLAG@", "r")
  if f ~= nil then
    f:close()
    error("refusing new instances while @FLAG@ exists")
  end
  return true
end
"""
STARTUP_TIMEOUT = 30.0


@dataclass
class Orthanc:
    """A running Orthanc: its AE title, ports, folder and a tiny REST client."""

    ae_title: str
    dicom_port: int
    http_port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def node(self) -> str:
        """The ``AET@host:port`` form the node's settings use (e.g. ``SGC_ARCHIVE``)."""
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call; JSON in and out (bytes are sent as they are)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def add_modality(self, name: str, ae_title: str, host: str, port: int) -> None:
        """Register a peer at run time (PUT /modalities/{name}), no restart needed."""
        self.request("PUT", f"/modalities/{name}", {"AET": ae_title, "Host": host, "Port": port})

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """The instances Orthanc holds for ``study_uid``, with their main DICOM tags."""
        found = self.request(
            "POST", "/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}
        )
        return [self.get(f"/instances/{i}") for i in found]

    def sr_instances(self, study_uid: str) -> list[dict[str, Any]]:
        """The SR instances of ``study_uid`` (Modality SR at series level)."""
        out = []
        for inst in self.instances_of_study(study_uid):
            series = self.get(f"/series/{inst['ParentSeries']}")
            if series["MainDicomTags"].get("Modality") == "SR":
                out.append(inst)
        return out

    def file_of(self, orthanc_id: str) -> bytes:
        return self.request("GET", f"/instances/{orthanc_id}/file")

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        config_path = self.folder / "config.json"
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [_binary(), str(config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer /system in {STARTUP_TIMEOUT} s")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL); the storage stays, so start() resumes it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, n: int = 4000) -> str:
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


def _binary() -> str:
    path = shutil.which("Orthanc") or shutil.which("orthanc")
    if path is None:
        pytest.fail("Orthanc is not installed: run `make deps` (tests use the real archive)")
    return path


def make_orthanc(
    folder: Path,
    *,
    ae_title: str = "ORTHANC",
    modalities: dict[str, tuple[str, str, int]] | None = None,
    always_allow_store: bool = True,
    check_called_aet: bool = False,
    refuse_flag: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> Orthanc:
    """Write a config for an Orthanc in ``folder`` (not started).

    ``modalities`` maps a name to (AET, host, port): the peers Orthanc knows (and may push to).
    ``always_allow_store=False`` makes Orthanc refuse C-STORE from AE titles it does not know
    (Orthanc aborts the association: no DIMSE status). ``refuse_flag``: while that file
    exists, every C-STORE is answered with the failure status 0xA700 (Out of Resources), as
    an archive with a full disk does; delete it and Orthanc stores again, no restart.
    """
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    while dicom_port == http_port:
        dicom_port = free_port()
    config: dict[str, Any] = {
        "Name": f"test-{ae_title}",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "DicomCheckCalledAet": check_called_aet,
        "DicomAlwaysAllowStore": always_allow_store,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": {k: list(v) for k, v in (modalities or {}).items()},
        "Plugins": [str(PLUGINS_DIR)] if PLUGINS_DIR.is_dir() else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
        "SaveJobs": False,
        "ConcurrentJobs": 2,
        "HttpThreadsCount": 8,
    }
    if refuse_flag is not None:
        script = folder / "refuse.lua"
        script.write_text(_REFUSE_LUA.replace("@FLAG@", str(refuse_flag)))
        config["LuaScripts"] = [str(script)]
    config.update(extra or {})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return Orthanc(
        ae_title=ae_title,
        dicom_port=dicom_port,
        http_port=http_port,
        folder=folder,
        config=config,
    )


@contextmanager
def orthanc_server(folder: Path, **kwargs: Any) -> Iterator[Orthanc]:
    """A started Orthanc (see :func:`make_orthanc`), stopped at exit."""
    server = make_orthanc(folder, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A fresh Orthanc archive per test (AE ORTHANC), accepting stores from anyone."""
    with orthanc_server(tmp_path / "orthanc") as server:
        yield server
