"""Node processes for fault tests: `sgc scp` / `sgc worker` as real children, and dcmtk senders.

Why separate processes: a fault test kills the node with SIGKILL, restarts it, or takes a
service away under it; only a real process shows what survives that. Each child has its own
process group (a kill reaches its threads and pool children) and logs to a file the test
reads on failure and greps for patient data.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from db.session import make_engine, make_session_factory
from tests.helpers.services import require_binary


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def wait_until(
    predicate: Callable[[], object], what: str, timeout: float = 60.0, procs=()
) -> object:
    """Poll ``predicate`` until truthy; fail naming ``what`` (or a child that died)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: {p.args} exited with {p.returncode}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class NodeProcesses:
    """The environment of one node under test and its child processes."""

    folder: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def create(cls, folder: Path, **settings: object) -> NodeProcesses:
        """``settings`` are SGC_* names without the prefix, e.g. ``port=11112``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
        env.update({f"SGC_{k.upper()}": str(v) for k, v in settings.items()})
        env.setdefault("SGC_DATA_DIR", str(folder / "data"))
        env.setdefault("SGC_HOST", "127.0.0.1")
        env.setdefault("SGC_METRICS_PORT", "0")
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, env)

    @property
    def port(self) -> int:
        return int(self.env["SGC_PORT"])

    @property
    def database_url(self) -> str:
        url = self.env.get("SGC_DATABASE_URL")
        return url or f"sqlite:///{(Path(self.env['SGC_DATA_DIR']) / 'sgc.db').resolve()}"

    @property
    def storage(self) -> Path:
        folder = self.env.get("SGC_STORAGE_DIR")
        return Path(folder) if folder else Path(self.env["SGC_DATA_DIR"]) / "storage"

    def log_path(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """Start ``sgc ARGS`` as child ``name`` (appending to ``<name>.log``)."""
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sgc_node", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def start_scp(self, name: str = "scp", timeout: float = 60.0) -> subprocess.Popen:
        proc = self.start(name, "scp")
        wait_until(lambda: port_open(self.port), "the SCP to listen", timeout, [proc])
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        stop_process_groups(self.procs.values())

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.folder.glob("*.log"))
        )

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("*.log")))

    def sessions(self):
        return make_session_factory(make_engine(self.database_url))


def count_rows(sessions, model, *where) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


_SENDING = re.compile(r"^I: Sending file: (.+)$")
_RESPONSE = re.compile(r"^I: Received Store Response \((.+)\)$")


@dataclass
class StorescuRun:
    """What one dcmtk storescu run reported: the exit code and each file's response."""

    returncode: int
    responses: dict[Path, str]
    output: str

    @property
    def succeeded(self) -> list[Path]:
        return [p for p, r in self.responses.items() if r == "Success"]


def storescu(
    port: int,
    files: list[Path],
    *extra: str,
    calling: str = "STORESCU",
    called: str = "SGC_NODE",
    timeout: float = 300.0,
) -> StorescuRun:
    """Send ``files`` with dcmtk storescu in one association; parse per-file responses (-v)."""
    cmd = [require_binary("storescu"), "-v", "-aet", calling, "-aec", called, *extra]
    cmd += ["127.0.0.1", str(port), *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return parse_storescu(proc.returncode, proc.stdout + proc.stderr)


def parse_storescu(returncode: int, output: str) -> StorescuRun:
    responses: dict[Path, str] = {}
    current: Path | None = None
    for line in output.splitlines():
        if m := _SENDING.match(line):
            current = Path(m.group(1))
        elif (m := _RESPONSE.match(line)) and current is not None:
            responses[current] = m.group(1)
            current = None
    return StorescuRun(returncode, responses, output)


def stop_process_groups(procs) -> None:
    """SIGTERM each child's process group, then SIGKILL what is still there after 20 s."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def children_of(pid: int) -> dict[int, str]:
    """{pid: command line} of the live (non-zombie) children of ``pid``, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found
