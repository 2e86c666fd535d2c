"""`sgc demo`: a throw-away archive, the node and OHIF, a synthetic screening set, the results.

Why one command: seeing a result in a viewer otherwise takes an archive, the node with that
archive configured, a push from the archive, a viewer and a search for the study. Here Orthanc
plays the PACS: it holds the studies and pushes them to the node (``POST
/modalities/sgc/store``), as a PACS routing rule would; the node's reports come back into the
same studies, and OHIF opens the one with a malignant lesion.

Everything listens on the loopback (Orthanc's DICOM port, which cannot be bound to an address,
answers only the node), on free ports unless told otherwise, and lives in one folder that is
removed at exit unless ``keep``. The processes (Orthanc; `sgc serve` with its SCP and worker)
are stopped, with whatever they started, on Ctrl-C, SIGTERM, an error or the end of ``once``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sgc_node.demo_options import DemoError, DemoOptions, port_requests
from sgc_node.demo_set import DemoStudy, StudyOutcome, make_set, node_status
from sgc_node.orthanc import OrthancError, OrthancServer, orthanc_binary, orthanc_config
from sgc_node.ports import resolve_ports
from sgc_node.proctree import stop_signals, stop_tree

VIEWER_DIR = Path(__file__).resolve().parents[1] / "viewer"
NODE_AE = "SGC_NODE"
MODALITY = "sgc"  # the node's name in Orthanc's DicomModalities

#: SR storage classes OHIF's SR viewport reads (TID 1500 lives in these); a Mammography CAD
#: SR, which it cannot draw, is never the one the URL opens.
OHIF_SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
}

#: Node settings the demo sets itself or must not inherit from the shell: the demo's node is
#: embedded, private and on the loopback, whatever the user's production node is configured to.
_NOT_INHERITED = (
    "SGC_DATA_DIR", "SGC_DATABASE_URL", "SGC_BROKER_URL", "SGC_STORAGE_DIR", "SGC_AE_TITLE",
    "SGC_HOST", "SGC_PORT", "SGC_CHECK_CALLED_AET", "SGC_ALLOWED_CALLING_AETS", "SGC_ARCHIVE",
    "SGC_WEB_", "SGC_TLS_", "SGC_METRICS_", "SGC_STABLE_AGE", "SGC_SWEEP_INTERVAL",
)  # fmt: skip

#: Seconds `sgc serve` gets to stop its children (a worker finishes the image it is on).
NODE_GRACE = 45.0


class Demo:
    """The running pieces; :meth:`close` stops them all, whatever state run() reached."""

    def __init__(self, opts: DemoOptions, echo: Callable[[str], None]) -> None:
        self.opts = opts
        self.echo = echo
        self.started = time.monotonic()
        self.folder: Path | None = None
        self.created_folder = False
        self.orthanc: OrthancServer | None = None
        self.node: subprocess.Popen[bytes] | None = None
        self.viewer = None
        self.viewer_url = ""
        self.url_shown: str | None = None

    # -- start ---------------------------------------------------------------------------
    def run(self) -> int:
        viewer_port, http_port, dicom_port, node_port = resolve_ports(port_requests(self.opts))
        dist = VIEWER_DIR / "dist"
        if not (dist / "index.html").is_file():
            raise DemoError(f"OHIF is not fetched into {dist}: run `make viewer-dist`")
        try:
            orthanc_binary()
        except OrthancError as exc:
            raise DemoError(str(exc)) from None
        folder = self._folder()
        self.echo(f"sgc demo: data in {folder}" + ("" if self.opts.keep else " (removed at exit)"))
        self.orthanc = OrthancServer.create(
            folder / "orthanc",
            orthanc_config(
                folder / "orthanc",
                http_port=http_port,
                dicom_port=dicom_port,
                modalities={MODALITY: (NODE_AE, "127.0.0.1", node_port)},
                always_allow_store=False,
            ),
        )
        try:
            self.orthanc.start()
        except OrthancError as exc:
            raise DemoError(str(exc)) from None
        self._start_node(folder / "node", node_port)
        self.echo(
            f"Orthanc {self.orthanc.url} (DICOM {self.orthanc.node}) plays the PACS; "
            f"the node is {NODE_AE}@127.0.0.1:{node_port} (log {folder / 'node.log'})"
        )
        studies = make_set(folder / "studies", self.opts.studies, self.opts.seed)
        self._start_viewer(dist, viewer_port)
        self._push(studies, node_port)
        shown = self._wait_for_results(studies)
        self._wait_deliveries(studies)
        if not shown:
            self._show_other(studies)
        if self.opts.keep:
            self.echo(
                f"kept in {folder}: look again with `Orthanc {folder}/orthanc/config.json` and "
                f"`sgc viewer --orthanc {self.orthanc.url} --port {viewer_port}`"
            )
        elapsed = time.monotonic() - self.started
        if self.opts.once:
            self.echo(f"all reports are in Orthanc [{elapsed:.0f} s]")
            return 0
        self.echo(f"all reports are in Orthanc [{elapsed:.0f} s]; Ctrl-C stops everything.")
        while True:
            self._check_alive()
            time.sleep(0.5)

    def _folder(self) -> Path:
        if self.opts.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="sgc-demo-"))
            self.created_folder = True
        else:
            folder = self.opts.folder.resolve()
            if folder.exists() and any(folder.iterdir()):
                # Checked before it becomes ours: close() never empties a user's folder.
                raise DemoError(f"{folder} is not empty: give --dir a new or empty folder")
            self.created_folder = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            self.folder = folder
        return self.folder

    def _start_node(self, data_dir: Path, port: int) -> None:
        """`sgc serve` on the embedded default, delivering to our Orthanc."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env.update(
            SGC_DATA_DIR=str(data_dir),
            SGC_DATABASE_URL=self.database_url,
            SGC_AE_TITLE=NODE_AE,
            SGC_HOST="127.0.0.1",
            SGC_PORT=str(port),
            SGC_ARCHIVE=self.orthanc.node,
            SGC_METRICS_PORT="0",
            SGC_STABLE_AGE="2",
            SGC_SWEEP_INTERVAL="0.5",
        )
        log = open(self.folder / "node.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.node = subprocess.Popen(
                [sys.executable, "-m", "sgc_node", "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C handler stops it, once, in order
            )
        finally:
            log.close()

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.folder / 'node' / 'sgc.db'}"

    def _start_viewer(self, dist: Path, port: int) -> None:
        from sgc_node.viewer import make_server

        self.viewer = make_server(dist, VIEWER_DIR / "app-config.js", self.orthanc.url, port=port)
        threading.Thread(target=self.viewer.serve_forever, daemon=True).start()
        self.viewer_url = f"http://127.0.0.1:{port}"

    # -- the screening run ---------------------------------------------------------------
    def _push(self, studies: list[DemoStudy], node_port: int) -> None:
        """Put the studies into Orthanc, then have Orthanc send each to the node."""
        ids = {}
        for study in studies:
            for path in study.files:
                answer = self.orthanc.request("POST", "/instances", path.read_bytes())
                ids[study.study_uid] = answer["ParentStudy"]
        self._wait_node_port(node_port)
        self.echo(
            f"{len(studies)} synthetic studies (seed {self.opts.seed}) in Orthanc; Orthanc sends "
            f"them to the node (POST /modalities/{MODALITY}/store) and the reports come back:"
        )
        for study in studies:
            try:
                self.orthanc.request(
                    "POST",
                    f"/modalities/{MODALITY}/store",
                    {"Resources": [ids[study.study_uid]], "Synchronous": True},
                    timeout=300,
                )
            except OSError as exc:
                raise DemoError(
                    f"Orthanc could not send {study.patient_id} to the node ({exc}); "
                    f"see {self.orthanc.log_path} and {self.folder / 'node.log'}"
                ) from None

    def _wait_node_port(self, port: int, timeout: float = 120.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise DemoError(f"the node did not open port {port} in {timeout:g} s; {self._node_log()}")

    def _wait_for_results(self, studies: list[DemoStudy]) -> bool:
        """Print each study's line once the node has classified it, and the OHIF address of
        the first malignant one once its report is in Orthanc; True if that address came."""
        width = max(len(s.truth_text()) for s in studies)
        pending = {s.study_uid: s for s in studies}
        awaited: DemoStudy | None = None  # the malignant study whose report OHIF will open
        deadline = time.monotonic() + self.opts.timeout
        while pending or awaited:
            self._check_alive()
            if time.monotonic() > deadline:
                raise DemoError(
                    f"no result after {self.opts.timeout:g} s for {len(pending)} of "
                    f"{len(studies)} studies; "
                    f"{self._node_log()}"
                )
            for uid, status in self._classified(list(pending)):
                study, outcome = pending.pop(uid), StudyOutcome.from_status(status)
                self.echo(
                    f"  {study.patient_id}  truth: {study.truth_text():<{width}}  "
                    f"node: {outcome.text()}  [{time.monotonic() - self.started:.0f} s]"
                )
                if self.url_shown is None and awaited is None and study.malignant:
                    awaited = study if outcome.state == "done" else None
            if awaited and (series := self._report_series(awaited.study_uid)):
                self._show(awaited, series)
                awaited = None
            time.sleep(0.5)
        return self.url_shown is not None

    def _show(self, study: DemoStudy, series_uid: str) -> None:
        """OHIF's address of the study with the report in its viewport (drawn, no click)."""
        self.url_shown = (
            f"{self.viewer_url}/viewer?StudyInstanceUIDs={study.study_uid}"
            f"&initialSeriesInstanceUID={series_uid}"
        )
        self.echo(f"  open {study.patient_id} with its report in OHIF: {self.url_shown}")

    def _show_other(self, studies: list[DemoStudy]) -> None:
        """No malignant study got a report (another seed, or failures): open one that did."""
        for study in studies:
            if series := self._report_series(study.study_uid):
                self.echo("  (no study with a malignant lesion has a report)")
                self._show(study, series)
                return
        raise DemoError(f"no study was classified; {self._node_log()}")

    def _classified(self, uids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """`sgc status` of the studies whose job is done or failed."""
        return [
            (st["study_uid"], st)
            for st in self._status(uids)
            if st["job"] is not None and st["job"]["state"] in ("done", "failed")
        ]

    def _wait_deliveries(self, studies: list[DemoStudy]) -> None:
        """Wait until no report is still pending delivery (the overlays follow the SRs)."""
        deadline = time.monotonic() + self.opts.timeout
        uids = [s.study_uid for s in studies]
        while any(_pending_delivery(st) for st in self._status(uids)):
            self._check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"reports still undelivered after {self.opts.timeout:g} s")
            time.sleep(0.5)

    def _status(self, uids: list[str]) -> list[dict[str, Any]]:
        return node_status(self.database_url, uids)

    def _report_series(self, study_uid: str) -> str | None:
        """The SeriesInstanceUID of a report of ``study_uid`` in Orthanc that OHIF draws."""
        for series_uid, sop_class in self.orthanc.series_of(study_uid, "SR"):
            if sop_class in OHIF_SR_CLASSES:
                return series_uid
        return None

    # -- health and stop -----------------------------------------------------------------
    def _check_alive(self) -> None:
        if self.node is not None and self.node.poll() is not None:
            raise DemoError(
                f"the node exited with status {self.node.returncode}; {self._node_log()}"
            )
        proc = self.orthanc.process if self.orthanc else None
        if proc is not None and proc.poll() is not None:
            raise DemoError(
                f"Orthanc exited with status {proc.returncode}; see {self.orthanc.log_path}"
            )

    def _node_log(self) -> str:
        return f"see {self.folder / 'node.log'}" if self.folder else ""

    def close(self, keep: bool) -> None:
        """Stop the viewer, the node (and its children) and Orthanc; drop the folder unless
        ``keep``."""
        if self.viewer is not None:
            self.viewer.shutdown()
            self.viewer.server_close()
        if self.node is not None:
            stop_tree(self.node, NODE_GRACE)
        if self.orthanc is not None:
            self.orthanc.stop()
        if self.folder is not None and not keep:
            if self.created_folder:
                shutil.rmtree(self.folder, ignore_errors=True)
            else:
                for child in self.folder.iterdir():
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def _pending_delivery(status: dict[str, Any]) -> bool:
    job = status["job"] or {}
    return any(d["state"] == "pending" for r in job.get("reports", ()) for d in r["deliveries"])


def run_demo(opts: DemoOptions, echo: Callable[[str], None]) -> int:
    """Run the demo; 0 when stopped by the user or after ``once``. Raises DemoError or
    PortTaken; nothing is left running either way, and after a failure the folder stays so
    that the logs its message names can be read."""
    demo = Demo(opts, echo)
    failed = False
    with stop_signals():
        try:
            return demo.run()
        except KeyboardInterrupt:
            echo("stopping ...")
            return 0
        except BaseException:
            failed = True
            raise
        finally:
            # A second Ctrl-C must not cut the stop short and leave processes behind.
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            demo.close(keep=opts.keep or failed)
