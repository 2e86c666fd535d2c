"""A throw-away Orthanc archive: its config, its process, and the few REST calls we need.

Why the product starts Orthanc itself: `sgc demo` shows the node as a hospital meets it, next
to a PACS that pushes studies and receives the reports. Orthanc starts in ~0.1 s from one JSON
file, so a private one per run costs nothing and never touches an archive the user has.

Orthanc has no bind-address option: ``RemoteAccessAllowed: false`` keeps its HTTP on the
loopback, and :func:`orthanc_config` makes its DICOM port answer only the peers it names
(``DicomAlwaysAllowStore``/``Echo`` off, ``DicomCheckModalityHost`` on).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where Debian's orthanc-dicomweb and orthanc-gdcm put their plugins.
PLUGINS_DIR = Path("/usr/share/orthanc/plugins")

#: Seconds Orthanc may take to answer /system after it starts.
STARTUP_TIMEOUT = 30.0


class OrthancError(RuntimeError):
    """Orthanc is missing, did not start, or refused a request; the message says which."""


def orthanc_binary() -> str:
    """The Orthanc executable on PATH (Debian names it ``Orthanc``)."""
    path = shutil.which("Orthanc") or shutil.which("orthanc")
    if path is None:
        raise OrthancError(
            "Orthanc is not installed: run `make deps` (apt-get install orthanc "
            "orthanc-dicomweb orthanc-gdcm)"
        )
    return path


def orthanc_config(
    folder: Path,
    *,
    http_port: int,
    dicom_port: int,
    ae_title: str = "ORTHANC",
    modalities: dict[str, tuple[str, str, int]] | None = None,
    always_allow_store: bool = True,
    check_called_aet: bool = False,
) -> dict[str, Any]:
    """Orthanc's configuration for an archive kept in ``folder``.

    ``modalities`` maps a name to (AET, host, port): the peers Orthanc knows and may push
    to (``POST /modalities/{name}/store``). With ``always_allow_store=False`` only those
    peers, from their own host, may store or echo.
    """
    folder = folder.resolve()
    return {
        "Name": f"sgc-{ae_title.lower()}",
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
        "DicomAlwaysAllowEcho": always_allow_store,
        "DicomCheckModalityHost": not always_allow_store,
        "DicomModalities": {k: list(v) for k, v in (modalities or {}).items()},
        "Plugins": [str(PLUGINS_DIR)] if PLUGINS_DIR.is_dir() else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
        "SaveJobs": False,
        "ConcurrentJobs": 2,
        "HttpThreadsCount": 8,
    }


@dataclass
class OrthancServer:
    """An Orthanc run from ``folder/config.json``: start, stop, and a small REST client."""

    folder: Path
    config: dict[str, Any]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, folder: Path, config: dict[str, Any]) -> OrthancServer:
        """Write ``config`` to ``folder/config.json`` (not started)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        return cls(folder=folder, config=config)

    @property
    def ae_title(self) -> str:
        return self.config["DicomAet"]

    @property
    def http_port(self) -> int:
        return self.config["HttpPort"]

    @property
    def dicom_port(self) -> int:
        return self.config["DicomPort"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def node(self) -> str:
        """The ``AET@host:port`` form the node's settings use (e.g. ``SGC_ARCHIVE``)."""
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """One REST call; JSON in and out (bytes are sent as they are)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def find(self, level: str, **query: str) -> list[str]:
        """Orthanc ids of the resources at ``level`` whose main tags match ``query``."""
        return self.request("POST", "/tools/find", {"Level": level, "Query": query})

    def series_of(self, study_uid: str, modality: str) -> list[tuple[str, str]]:
        """(SeriesInstanceUID, SOPClassUID of its first instance) of each ``modality``
        series of ``study_uid``."""
        out = []
        for series_id in self.find("Series", StudyInstanceUID=study_uid, Modality=modality):
            series = self.get(f"/series/{series_id}")
            first = self.get(f"/instances/{series['Instances'][0]}/simplified-tags")
            out.append((series["MainDicomTags"]["SeriesInstanceUID"], first.get("SOPClassUID")))
        return out

    def start(self) -> None:
        """Start it and wait until its REST API answers (``STARTUP_TIMEOUT``)."""
        if self.process is not None and self.process.poll() is None:
            return
        with open(self.log_path, "ab") as log:
            # Own session: a terminal's Ctrl-C reaches the caller, which stops us once.
            self.process = subprocess.Popen(
                [orthanc_binary(), str(self.folder / "config.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise OrthancError(f"Orthanc exited with status {code}: {self.log_tail(600)}")
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        self.stop()
        raise OrthancError(f"Orthanc did not answer /system in {STARTUP_TIMEOUT:g} s")

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
        path = self.log_path
        return path.read_text(errors="replace")[-n:] if path.exists() else ""
