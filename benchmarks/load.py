"""Load: N concurrent associations x M mammograms into `sgc serve` with classification on.

What it reports, for the node as `make run` starts it (SCP + one worker, SQLite, filesystem
broker, fsync on) delivering SRs to a real Orthanc:
  - instances/s and MB/s over the sending phase (first byte to last response),
  - p50 / p99 C-STORE response time (measured per instance in each sender),
  - time from the first byte until the last SR is in Orthanc,
  - peak RSS (VmHWM) of the SCP and the worker process,
  - nothing lost: every C-STORE answered 0x0000, one row per instance, every study one job
    done, one SR delivered per study and present in Orthanc.
The peer, in the same run: dcmtk storescp receiving the same senders (ingest only, no
classification); the ratio ours/dcmtk of instances/s is printed.

Each sender is its own process (pynetdicom over one association, chunked from disk), so the
senders do not share a GIL with each other or with the node. Studies are 4-view screening
exams (LCC, RCC, LMLO, RMLO), ``--per-association`` images per association.

    .venv/bin/python -m benchmarks.load                   # 8 x 50, 2 MB images (this 2-core box)
    .venv/bin/python -m benchmarks.load --megabytes 17    # a full-field mammogram's size
    .venv/bin/python -m benchmarks.load --quick           # 2 x 8 x 0.5 MB smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pydicom.uid import generate_uid

from tests.helpers.mg import MGSpec, write_mg

VIEWS = [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port}")


def make_batches(folder: Path, senders: int, per: int, megabytes: float) -> list[list[Path]]:
    """``senders`` lists of ``per`` images, grouped into 4-view studies (one study per 4)."""
    pixels = megabytes * 1e6 / 2
    rows = int((pixels * 1.3) ** 0.5) // 2 * 2
    cols = int(pixels / rows) // 2 * 2
    batches = []
    for a in range(senders):
        paths, study, series = [], "", {}
        for i in range(per):
            if i % 4 == 0:
                study, series = generate_uid(), {"L": generate_uid(), "R": generate_uid()}
            lat, view = VIEWS[i % 4]
            spec = MGSpec(
                rows=rows, cols=cols, laterality=lat, view=view, study_uid=study,  # type: ignore[arg-type]
                series_uid=series[lat], seed=a * 1000 + i,
            )  # fmt: skip
            paths.append(write_mg(folder / f"a{a:02d}" / f"{i:04d}.dcm", spec))
        batches.append(paths)
    return batches


def send(args: tuple[int, str, list[str]]) -> list[tuple[float, int]]:
    """One association: C-STORE every file; return (seconds, status) per file."""
    port, called, files = args
    from pynetdicom import AE, _config

    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title="LOADSCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1.2", ["1.2.840.10008.1.2.1"])
    ae.maximum_pdu_size = 1 << 20
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return [(0.0, -1) for _ in files]
    out = []
    for path in files:
        t0 = time.perf_counter()
        rsp = assoc.send_c_store(Path(path))
        out.append((time.perf_counter() - t0, int(rsp.Status) if rsp and "Status" in rsp else -1))
    assoc.release()
    return out


def run_senders(port: int, called: str, batches: list[list[Path]]) -> tuple[float, list]:
    ctx = mp.get_context("fork")
    with ctx.Pool(len(batches)) as pool:
        t0 = time.perf_counter()
        results = pool.map(send, [(port, called, [str(p) for p in b]) for b in batches])
        return time.perf_counter() - t0, [r for rs in results for r in rs]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> dict[str, int]:
    """The processes under `sgc serve` by role (their command lines): scp, web, worker (it
    classifies) and deliver; the worker's peak memory is the classifying one's."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found[_role([w.decode() for w in cmd])] = int(proc.name)
    return found


def _role(words: list[str]) -> str:
    """scp, web, worker (the classify queue) or deliver: as `sgc serve` names its children."""
    if "worker" not in words:
        return "web" if "web" in words else "scp"
    queue = words[words.index("--queues") + 1] if "--queues" in words else ""
    return "deliver" if queue == "deliver" else "worker"


def orthanc_sr_series(url: str) -> int:
    req = urllib.request.Request(
        url + "/tools/find",
        data=json.dumps({"Level": "Series", "Query": {"Modality": "SR"}}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return len(json.loads(r.read()))


def peer_run(batches: list[list[Path]], folder: Path) -> float:
    """dcmtk storescp receiving the same senders; returns instances/s."""
    port = free_port()
    out = folder / "storescp"
    out.mkdir()
    proc = subprocess.Popen(
        ["storescp", "--fork", "-od", str(out), "-aet", "SGC_NODE", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        seconds, results = run_senders(port, "SGC_NODE", batches)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert all(s == 0 for _, s in results), "storescp refused instances"
    return len(results) / seconds


def node_run(batches, folder: Path, model: Path, orthanc) -> dict:
    """Send every batch into `sgc serve` and wait for every study's SR in Orthanc; the figures
    and the counts that say nothing was lost."""
    n_studies = sum((len(b) + 3) // 4 for b in batches)
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed below
    serve = subprocess.Popen(
        [sys.executable, "-m", "sgc_node", "serve"], env=_serve_env(folder, port, model, orthanc),
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    try:
        wait_port(port, serve)
        procs = children(serve.pid)
        t0 = time.perf_counter()
        seconds, results = run_senders(port, "SGC_NODE", batches)
        last_sr = _wait_for_srs(serve, orthanc, n_studies, t0, folder)
        rss = {name: peak_rss_mb(pid) for name, pid in procs.items()}
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        serve.wait(120)
        log.close()
    result = _figures(batches, seconds, results, last_sr, rss)
    counts = _db_counts(folder / "data" / "sgc.db")
    counts["sr_in_orthanc"] = orthanc_sr_series(orthanc.url) if last_sr else None
    result["lost"] = {"acknowledged": sum(1 for _, st in results if st == 0), **counts}
    result["nothing_lost"] = (
        result["lost"]["acknowledged"] == counts["rows"] == result["images"]
        and counts["jobs"] == counts["jobs_done"] == counts["deliveries_sent"] == n_studies
        and last_sr is not None
    )
    return result


def _serve_env(folder: Path, port: int, model: Path, orthanc) -> dict[str, str]:
    """`sgc serve`'s environment: this run's settings only (no SGC_* of the caller's), fast
    settling and sweeping so the run measures the node, not its waits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(
        SGC_DATA_DIR=str(folder / "data"), SGC_HOST="127.0.0.1", SGC_PORT=str(port),
        SGC_MODEL=str(model), SGC_DEVICE="cpu", SGC_ARCHIVE=orthanc.node, SGC_STABLE_AGE="2",
        SGC_SWEEP_INTERVAL="0.5", SGC_METRICS_PORT="0", SGC_MAX_ASSOCIATIONS="32",
        SGC_DELIVERY_RETRY_BASE="1", SGC_LOG_LEVEL="WARNING",
    )  # fmt: skip
    return env


def _wait_for_srs(serve, orthanc, n_studies: int, t0: float, folder: Path) -> float | None:
    """Seconds from ``t0`` until Orthanc holds one SR series per study (None after 30 min)."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise SystemExit("sgc serve died: see " + str(folder / "serve.log"))
        if orthanc_sr_series(orthanc.url) >= n_studies:
            return time.perf_counter() - t0
        time.sleep(0.5)
    return None


def _db_counts(database: Path) -> dict[str, int]:
    """What the node's database says it received, classified and delivered."""
    from sqlalchemy import func, select

    from db.models import Delivery, DeliveryState, Instance, Job, JobState
    from db.session import make_engine, make_session_factory

    sessions = make_session_factory(make_engine(f"sqlite:///{database}"))
    with sessions() as s:
        return {
            "rows": s.scalar(select(func.count()).select_from(Instance)),
            "jobs": s.scalar(select(func.count()).select_from(Job)),
            "jobs_done": s.scalar(select(func.count()).where(Job.state == JobState.done)),
            "deliveries_sent": s.scalar(
                select(func.count()).where(Delivery.state == DeliveryState.sent)
            ),
        }


def _figures(batches, seconds: float, results, last_sr: float | None, rss: dict) -> dict:
    """Throughput, C-STORE latency percentiles, time to the last SR and peak memory."""
    n_images = sum(len(b) for b in batches)
    mbytes = sum(p.stat().st_size for b in batches for p in b) / 1e6
    latencies = [t for t, _ in results]
    return {
        "images": n_images,
        "studies": sum((len(b) + 3) // 4 for b in batches),
        "mb_total": round(mbytes, 1),
        "send_seconds": round(seconds, 2),
        "instances_per_s": round(n_images / seconds, 2),
        "mb_per_s": round(mbytes / seconds, 1),
        "c_store_p50_ms": round(1000 * statistics.median(latencies), 1),
        "c_store_p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "last_sr_seconds": None if last_sr is None else round(last_sr, 1),
        "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
    }


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def pick_model(requested: Path | None, folder: Path) -> tuple[Path, str]:
    if requested:
        return requested, "given"
    bundled = sorted(
        (Path(__file__).resolve().parents[1] / "sgc_core" / "models").glob("*.safetensors")
    )
    if bundled:
        return bundled[0], "bundled"
    from tests.helpers.tiny_model import train_tiny_model

    return train_tiny_model(folder / "tiny-model"), "tiny (16 px, trained now)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--associations", type=int, default=8)
    parser.add_argument("--per-association", type=int, default=50)
    parser.add_argument("--megabytes", type=float, default=2.0, help="size of each image")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--no-peer", action="store_true", help="skip the dcmtk storescp run")
    parser.add_argument("--quick", action="store_true", help="2 x 8 x 0.5 MB smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.associations, args.per_association, args.megabytes = 2, 8, 0.5
    from tests.helpers.orthanc import orthanc_server

    folder = Path(tempfile.mkdtemp(prefix="sgc-load-"))
    try:
        model, kind = pick_model(args.model, folder)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"{platform.system()} {platform.release()}, load {loadavg()}")  # fmt: skip
        print(f"model: {model} ({kind})")
        t = time.perf_counter()
        batches = make_batches(folder / "images", args.associations, args.per_association, args.megabytes)  # fmt: skip
        print(f"{args.associations} x {args.per_association} images of {args.megabytes} MB "
              f"written in {time.perf_counter() - t:.0f} s")  # fmt: skip
        with orthanc_server(folder / "orthanc") as orthanc:
            result = node_run(batches, folder / "node", model, orthanc)
        if not args.no_peer:
            peer = peer_run(batches, folder)
            result["dcmtk_storescp_instances_per_s"] = round(peer, 2)
            result["ratio_ours_vs_dcmtk"] = round(result["instances_per_s"] / peer, 2)
        result.update(
            associations=args.associations, per_association=args.per_association,
            megabytes=args.megabytes, model=kind, cpus=os.cpu_count(),
            loadavg=loadavg(),
        )  # fmt: skip
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        if not result["nothing_lost"]:
            raise SystemExit("LOST DATA: see the counts above")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
