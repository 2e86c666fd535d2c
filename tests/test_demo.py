"""`sgc demo` as a new user runs it: one command, results on screen, the report in OHIF, and
nothing left running afterwards, whether it ends by itself (--once) or by Ctrl-C.

The processes the demo starts are watched from outside (``ps``, every 0.2 s while it runs),
so a child that outlives it is caught even if the demo's own bookkeeping missed it.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sgc_node.orthanc import OrthancServer
from tests.helpers.ohif import ARTIFACTS, chromium_path, dismiss_popups

SGC = [sys.executable, "-m", "sgc_node"]
URL_LINE = re.compile(r"with its report in OHIF: (http://127\.0\.0\.1:(\d+)/viewer\?\S+)")
PORTS_LINE = re.compile(
    r"Orthanc http://127\.0\.0\.1:(\d+) \(DICOM ORTHANC@127\.0\.0\.1:(\d+)\).*"
    r"SGC_NODE@127\.0\.0\.1:(\d+)"
)
RESULT_LINE = re.compile(r"^  (SYN\d{4}-\d{6})  truth: (.+?)  node: (.+)  \[\d+ s\]$")


class Family:
    """Every process seen below ``pid`` while it ran, as (pid, start time) from ``ps``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            rows = subprocess.run(
                ["ps", "-e", "-o", "pid=,ppid=,lstart="], capture_output=True, text=True
            ).stdout.splitlines()
            table = {int(r.split()[0]): (int(r.split()[1]), " ".join(r.split()[2:])) for r in rows}
            found: set[int] = set()
            frontier = {self.pid}
            while frontier:
                frontier = {p for p, (ppid, _) in table.items() if ppid in frontier} - found
                found |= frontier
            self.seen |= {(p, table[p][1]) for p in found}
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def survivors(self) -> list[tuple[int, str]]:
        """The processes seen that still run (same pid and start time, not a zombie)."""
        out = []
        for pid, started in self.seen:
            row = subprocess.run(
                ["ps", "-p", str(pid), "-o", "stat=,lstart="], capture_output=True, text=True
            ).stdout.split()
            if row and not row[0].startswith("Z") and " ".join(row[1:]) == started:
                out.append((pid, started))
        return out


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start_demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SGC, "demo", "--studies", "1", "--viewer-port", "0", "--dir", str(tmp_path / "demo"),
         *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _read_until(proc: subprocess.Popen[str], pattern: str, lines: list[str]) -> None:
    """Collect output lines until one contains ``pattern`` (fail if the demo ends first)."""
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if pattern in line:
            return
    raise AssertionError(f"the demo ended before {pattern!r}:\n" + "\n".join(lines[-40:]))


def _report_text(url: str, screenshot: Path) -> str:
    """Open ``url`` in headless Chromium as a user would; return the page's text once the
    report's label is drawn (no click: the URL must open the report by itself)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            page.get_by_text("Probability of cancer").first.wait_for(timeout=150_000)
            dismiss_popups(page)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
            return page.inner_text("body")
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.orthanc
@pytest.mark.browser
def test_demo_once_prints_result_and_url_then_leaves_nothing_running(tmp_path: Path) -> None:
    demo = _start_demo(tmp_path, "--once", "--keep")
    family = Family(demo.pid)
    try:
        out, _ = demo.communicate(timeout=540)
    finally:
        if demo.poll() is None:
            demo.kill()
        family.stop()
    lines = out.splitlines()
    assert demo.returncode == 0, out[-4000:]
    results = [m for line in lines if (m := RESULT_LINE.match(line))]
    assert len(results) == 1, out
    (result,) = results
    assert result.group(1) == "SYN0017-000000"
    assert result.group(2).startswith("malignant: R "), out  # the set's truth, printed
    assert "P(malignant)" in result.group(3), out
    (url_match,) = [m for line in lines if (m := URL_LINE.search(line))]
    http, dicom, node = (int(p) for p in PORTS_LINE.search(out).groups())
    viewer = int(url_match.group(2))

    # Nothing survives: no process the demo started, no port it listened on.
    assert len(family.seen) >= 3, family.seen  # Orthanc, `sgc serve`, its SCP and worker
    assert family.survivors() == []
    assert not any(_listening(p) for p in (http, dicom, node, viewer))

    # --keep kept the archive: "look again" as the demo says, and the printed URL opens the
    # study with the report's label drawn.
    folder = tmp_path / "demo" / "orthanc"
    archive = OrthancServer(folder, json.loads((folder / "config.json").read_text()))
    archive.start()
    viewer_proc = subprocess.Popen(
        [*SGC, "viewer", "--orthanc", archive.url, "--port", str(viewer)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _listening(viewer):
            assert viewer_proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        text = _report_text(url_match.group(1), ARTIFACTS / "demo-ohif.png")
    finally:
        viewer_proc.terminate()
        viewer_proc.wait(10)
        archive.stop()
    assert re.search(r"Probability of cancer: [\d.]+ %", text), text[-2000:]


@pytest.mark.slow
@pytest.mark.orthanc
def test_one_ctrl_c_mid_run_stops_everything_and_drops_the_data(tmp_path: Path) -> None:
    demo = _start_demo(tmp_path)
    family = Family(demo.pid)
    lines: list[str] = []
    try:
        # Interrupt while the node is classifying: the worker is busy, the hardest stop.
        _read_until(demo, "reports come back", lines)
        time.sleep(3)
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
        family.stop()
    assert demo.returncode == 0, "\n".join(lines) + rest
    assert "stopping" in rest
    http, dicom, node = (int(p) for p in PORTS_LINE.search("\n".join(lines)).groups())
    assert len(family.seen) >= 3, family.seen
    assert family.survivors() == []
    assert not any(_listening(p) for p in (http, dicom, node))
    assert not (tmp_path / "demo").exists()  # created by the demo, removed without --keep


@pytest.mark.parametrize(
    "option", ["--viewer-port", "--orthanc-port", "--orthanc-dicom-port", "--node-port"]
)
def test_a_taken_port_is_one_line_naming_the_option(tmp_path: Path, option: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["--viewer-port", "0", option, str(port), "--dir", str(tmp_path / "demo")]
        proc = subprocess.run(
            [*SGC, "demo", "--once", *args], capture_output=True, text=True, timeout=60
        )
    assert proc.returncode != 0
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert f"port {port}" in line and option in line and "is taken" in line, line
    assert not (tmp_path / "demo").exists()  # failed before starting anything


def test_ports_it_picks_are_free_and_distinct() -> None:
    from sgc_node.ports import PortRequest, resolve_ports

    ports = resolve_ports([PortRequest(f"p{i}", 0, f"--p{i}") for i in range(4)])
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: a server can listen there


@pytest.mark.orthanc
def test_the_demo_archive_answers_only_the_node(tmp_path: Path) -> None:
    """Orthanc cannot bind its DICOM port to the loopback; the demo's config makes it refuse
    every caller but the node (its AE title, from 127.0.0.1)."""
    from sgc_node.demo import MODALITY, NODE_AE
    from sgc_node.orthanc import orthanc_config
    from sgc_node.ports import PortRequest, resolve_ports
    from tests.conftest import require_binary

    http, dicom = resolve_ports([PortRequest("http", 0, "-"), PortRequest("dicom", 0, "-")])
    folder = tmp_path / "orthanc"
    config = orthanc_config(
        folder,
        http_port=http,
        dicom_port=dicom,
        modalities={MODALITY: (NODE_AE, "127.0.0.1", 11112)},
        always_allow_store=False,
    )
    archive = OrthancServer.create(folder, config)
    archive.start()
    try:
        echo = [require_binary("echoscu"), "-aec", "ORTHANC", "127.0.0.1", str(dicom)]
        stranger = subprocess.run([*echo, "-aet", "STRANGER"], capture_output=True, text=True)
        node = subprocess.run([*echo, "-aet", NODE_AE], capture_output=True, text=True)
    finally:
        archive.stop()
    assert stranger.returncode != 0 and "Not Recognized" in stranger.stderr + stranger.stdout
    assert node.returncode == 0, node.stderr


def test_stop_tree_leaves_no_grandchild_of_a_child_that_ignores_sigterm() -> None:
    """The worst case for the demo's stop: a child that ignores SIGTERM and started a process
    in a session of its own (as `sgc serve` does). Both must be gone after stop_tree."""
    from sgc_node.proctree import alive, descendants, stop_tree

    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    tree = descendants(child.pid)
    assert len(tree) == 1  # the sleep, in its own session
    started = time.monotonic()
    stop_tree(child, grace=1.0)
    assert child.poll() is not None
    assert not any(alive(p) for p in tree)
    assert time.monotonic() - started < 15  # grace 1 s + 5 s for the tree to stop by itself


def test_result_lines_say_truth_and_call_without_rounding_away_the_numbers() -> None:
    from sgc_node.demo_set import DemoStudy, StudyOutcome

    study = DemoStudy(
        "P", "1.2", (), {"R": ("malignant", "mass_spiculated"), "L": ("benign", "calc_benign")}
    )
    assert study.malignant
    assert study.truth_text() == (
        "malignant: R spiculated mass (malignant), L benign calcifications (benign)"
    )
    assert (
        DemoStudy("P", "1.3", (), {"R": ("normal", "none"), "L": ("normal", "none")}).truth_text()
        == "normal"
    )

    def pred(lat: str, view: str, cls: str | None, p: float | None, ood: bool = False) -> dict:
        probs = {} if p is None else {"malignant": p}
        return {"laterality": lat, "view": view, "predicted_class": cls, "probabilities": probs,
                "ood": ood, "model": "m 1"}  # fmt: skip

    done = {"job": {"state": "done", "error": None, "predictions": [
        pred("R", "CC", "not malignant", 0.1), pred("L", "CC", "malignant", 0.4567, ood=True),
        pred("R", "MLO", None, None)]}}  # fmt: skip
    assert StudyOutcome.from_status(done).text() == (
        "malignant in 1 of 3 views, highest P(malignant) 45.7 % (L CC), "
        "1 view(s) flagged out of distribution"
    )
    failed = {"job": {"state": "failed", "error": "no classifiable image", "predictions": []}}
    assert StudyOutcome.from_status(failed).text() == "failed: no classifiable image"


@pytest.mark.slow
@pytest.mark.orthanc
def test_a_demo_that_fails_midway_says_why_keeps_its_logs_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    demo = _start_demo(tmp_path, "--timeout", "1")  # no study is classified within 1 s
    family = Family(demo.pid)
    try:
        out, _ = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            demo.kill()
        family.stop()
    assert demo.returncode == 1, out
    last = out.splitlines()[-1]
    assert last.startswith("Error: no result after 1 s for 1 of 1 studies; see "), out
    http, dicom, node = (int(p) for p in PORTS_LINE.search(out).groups())
    assert len(family.seen) >= 3, family.seen
    assert family.survivors() == []
    assert not any(_listening(p) for p in (http, dicom, node))
    assert Path(last.rsplit("see ", 1)[1]).is_file()  # the log it names was kept to be read


def test_a_folder_that_is_not_empty_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    proc = subprocess.run(
        [*SGC, "demo", "--once", "--viewer-port", "0", "--dir", str(folder)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"Error: {folder} is not empty: give --dir a new or empty folder"
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "keep me"
