"""STOW-RS ingest throughput: the node's door (`sgc web`) against Orthanc's own STOW-RS.

Why this peer: Orthanc's DICOMweb plugin is a native STOW-RS server on the same machine and
disk, the natural bar for ours. Both receive the same studies of ~17 MB mammograms, one
multipart/related request per study, from ``--clients`` concurrent HTTP clients (httpx,
bodies streamed from disk). Runs alternate (ours, Orthanc, Orthanc, ours, ...), each into a
fresh server with empty storage; a small study is posted untimed first. Our door runs with
its defaults: fsync of every file and its directory, SQLite WAL, row committed before the
response. Orthanc runs with the test helper's configuration (its defaults otherwise).

Printed per run: wall-clock MB/s and the server's CPU seconds; then the medians and the
ratio ours / Orthanc, and the load average before and after (the machine is shared).

    .venv/bin/python -m benchmarks.stow --studies 4 --images 4 --rounds 3
    .venv/bin/python -m benchmarks.stow --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks.ingest import free_port, make_images
from tests.helpers.orthanc import make_orthanc


def body(paths: list[Path]) -> tuple[object, dict[str, str]]:
    """A streamed multipart/related body of ``paths`` and its headers (length declared)."""
    boundary = uuid.uuid4().hex
    heads = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(heads) + p.stat().st_size + 2 for p in paths) + len(tail)

    def chunks():
        for path in paths:
            yield heads
            with open(path, "rb") as fp:
                while chunk := fp.read(1 << 20):
                    yield chunk
            yield b"\r\n"
        yield tail

    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Content-Length": str(length),
        "Accept": "application/dicom+json",
    }
    return chunks(), headers


def post_all(url: str, studies: list[list[Path]], clients: int) -> float:
    """POST each study as one request, ``clients`` at a time; wall seconds."""

    def one(paths: list[Path]) -> None:
        content, headers = body(paths)
        rsp = httpx.post(url, content=content, headers=headers, timeout=600)
        if rsp.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {rsp.status_code} {rsp.text[:300]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, studies))
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def start_ours(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(SGC_DATA_DIR=str(workdir / "sgc-data"), SGC_WEB_PORT=str(port),
               SGC_LOG_LEVEL="WARNING", SGC_MIN_FREE_MB="0")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "sgc_node", "web"], env=env, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/", proc)
    return proc, base + "/studies"


def start_orthanc(workdir: Path) -> tuple[subprocess.Popen, str]:
    server = make_orthanc(workdir / "orthanc")
    server.start()
    assert server.process is not None
    return server.process, server.url + "/dicom-web/studies"


def run_once(name: str, workdir: Path, studies, warmup, clients: int) -> tuple[float, float]:
    start = start_ours if name == "ours" else start_orthanc
    proc, url = start(workdir)
    try:
        post_all(url, [warmup], 1)
        cpu0 = cpu_seconds(proc.pid)
        wall = post_all(url, studies, clients)
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(30)
    megabytes = sum(p.stat().st_size for s in studies for p in s) / 1e6
    return megabytes / wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=4)
    ap.add_argument("--images", type=int, default=4, help="images per study (one request)")
    ap.add_argument("--megabytes", type=float, default=17.0)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scratch", type=Path, default=None, help="folder for data (same disk)")
    ap.add_argument("--quick", action="store_true", help="2 studies x 2 images, 2 rounds")
    args = ap.parse_args()
    if args.quick:
        args.studies, args.images, args.rounds = 2, 2, 2
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        root = Path(tmp)
        studies = [
            make_images(root / f"study{i}", args.images, args.megabytes)
            for i in range(args.studies)
        ]
        warmup = make_images(root / "warmup", 2, 0.1)
        total = sum(p.stat().st_size for s in studies for p in s) / 1e6
        print(f"{args.studies} studies x {args.images} images, {total:.0f} MB per run, "
              f"{args.clients} client(s), {args.rounds} rounds")  # fmt: skip
        print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
        results: dict[str, list[tuple[float, float]]] = {"ours": [], "orthanc": []}
        for r in range(args.rounds):
            order = ("ours", "orthanc") if r % 2 == 0 else ("orthanc", "ours")
            for name in order:
                run_dir = root / f"run-{r}-{name}"
                mbps, cpu = run_once(name, run_dir, studies, warmup, args.clients)
                results[name].append((mbps, cpu))
                print(f"round {r} {name:8s} {mbps:7.1f} MB/s  server CPU {cpu:6.2f} s")
                subprocess.run(["rm", "-rf", str(run_dir)], check=False)
        print(f"load average after:  {Path('/proc/loadavg').read_text().strip()}")
        med = {k: statistics.median(m for m, _ in v) for k, v in results.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
        print(f"median MB/s: ours {med['ours']:.1f}, Orthanc {med['orthanc']:.1f}, "
              f"ratio {med['ours'] / med['orthanc']:.2f}")  # fmt: skip
        print(f"median server CPU s per run: ours {cpu['ours']:.2f}, Orthanc {cpu['orthanc']:.2f}")


if __name__ == "__main__":
    main()
