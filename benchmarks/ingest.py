"""Ingest throughput: our SCP (fsync on) against dcmtk's storescp, over loopback.

Why this peer: dcmtk storescp is native code writing to the same disk, the natural bar for
a Python SCP. Both receive the same ~17 MB mammograms from dcmtk storescu in alternating
runs (so drifting machine load hits both), each run into a fresh, empty destination (our
node would otherwise recognise re-sends and skip the write). Printed: wall-clock MB/s per
run, the medians and the ratio ours/dcmtk, for one association and for 4 concurrent ones.

    .venv/bin/python benchmarks/ingest.py --count 16 --rounds 3
    .venv/bin/python benchmarks/ingest.py --quick      # 4 images, 2 rounds: a smoke run

The machine's load average (``/proc/loadavg``) is printed before and after each setting,
because on a shared machine it moves the absolute numbers far more than the ratio.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.mg import MGSpec, write_mg  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_images(folder: Path, count: int, megabytes: float) -> list[Path]:
    """``count`` MG images of about ``megabytes`` MB each (16-bit, aspect of a 24x30 cm plate)."""
    pixels = megabytes * 1e6 / 2
    rows = int((pixels * 1.3) ** 0.5) // 2 * 2
    cols = int(pixels / rows) // 2 * 2
    study = None
    paths = []
    for i in range(count):
        spec = MGSpec(rows=rows, cols=cols, seed=i, laterality="LR"[i % 2])  # type: ignore[arg-type]
        if study:
            spec.study_uid = study
        study = spec.study_uid
        paths.append(write_mg(folder / f"{i:04d}.dcm", spec))
    return paths


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        ok = subprocess.run(
            ["echoscu", "-aec", "SGC_NODE", "127.0.0.1", str(port)], capture_output=True
        )
        if ok.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def start_ours(workdir: Path, port: int, processes: int = 1) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(
        SGC_DATA_DIR=str(workdir / "sgc-data"),
        SGC_HOST="127.0.0.1",
        SGC_PORT=str(port),
        SGC_FSYNC="true",
        SGC_LOG_LEVEL="WARNING",
        SGC_MAX_ASSOCIATIONS="8",
        SGC_SCP_PROCESSES=str(processes),
    )
    sgc = Path(sys.executable).with_name("sgc")
    return subprocess.Popen([str(sgc), "scp"], env=env, stderr=subprocess.DEVNULL)


def start_dcmtk(workdir: Path, port: int, processes: int = 1) -> subprocess.Popen:
    out = workdir / "storescp-out"
    out.mkdir(parents=True)
    return subprocess.Popen(
        ["storescp", "--fork", "-aet", "SGC_NODE", "-od", str(out), str(port)],
        stderr=subprocess.DEVNULL,
    )


def send(port: int, batches: list[list[Path]]) -> float:
    """Send each batch on its own association, all at once; return wall seconds."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", "-aec", "SGC_NODE", "127.0.0.1", str(port), *map(str, b)],
            stderr=subprocess.PIPE,
        )
        for b in batches
    ]
    errors = [p.communicate()[1] for p in procs if p.wait() != 0]
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"storescu failed: {errors[0][-500:]!r}")
    return elapsed


def make_warmup(folder: Path, count: int = 8) -> list[Path]:
    """Small MG images (one study) sent before timing, one per association."""
    spec = MGSpec(seed=10_000)
    paths = [write_mg(folder / "0000.dcm", spec)]
    for i in range(1, count):
        paths.append(
            write_mg(folder / f"{i:04d}.dcm", MGSpec(seed=10_000 + i, study_uid=spec.study_uid))
        )
    return paths


def run_once(
    kind: str,
    files: list[Path],
    senders: int,
    scratch: Path,
    processes: int = 1,
    warmup: list[Path] | None = None,
) -> float:
    """One timed run into a fresh server; returns wall-clock MB/s of ``files``.

    ``warmup`` images are sent first, each on its own association, four at a time, and
    are not timed: a node runs for months, so what is measured is steady-state ingest,
    not the first association's lazy imports and first SQL compilations in each process
    (with several SCP processes, new connections are hashed across all of them).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"ingest-{kind}-", dir=scratch))
    port = free_port()
    proc = (start_ours if kind == "ours" else start_dcmtk)(workdir, port, processes)
    warmup = warmup or []
    try:
        wait_listening(port, proc)
        if processes > 1:  # the receive processes bind a moment after the first answers
            time.sleep(3.0)
        for i in range(0, len(warmup), 4):
            send(port, [[f] for f in warmup[i : i + 4]])
        batches = [files[i::senders] for i in range(senders)]
        seconds = send(port, batches)
        if kind == "ours":
            stored = list((workdir / "sgc-data" / "storage").rglob("*.dcm"))
        else:
            stored = list((workdir / "storescp-out").iterdir())
        if len(stored) != len(files) + len(warmup):
            raise RuntimeError(f"{kind}: {len(stored)} of {len(files) + len(warmup)} stored")
        return sum(f.stat().st_size for f in files) / 1e6 / seconds
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def load() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16, help="images per run")
    parser.add_argument("--size-mb", type=float, default=17.0, help="size of each image")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per setting")
    parser.add_argument("--scratch", type=Path, default=None, help="disk to write to")
    parser.add_argument(
        "--senders",
        type=int,
        nargs="+",
        default=[1, 4],
        help="concurrent associations per setting (default: 1 4)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="SGC_SCP_PROCESSES for our SCP (processes sharing the port; default 1)",
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="time from a cold server (no untimed small images first)",
    )
    parser.add_argument("--quick", action="store_true", help="small run: 4 images, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.count, args.rounds = min(args.count, 4), min(args.rounds, 2)
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: install dcmtk")

    scratch = Path(tempfile.mkdtemp(prefix="sgc-ingest-", dir=args.scratch))
    try:
        files = make_images(scratch / "images", args.count, args.size_mb)
        warmup = [] if args.no_warmup else make_warmup(scratch / "warmup")
        total = sum(f.stat().st_size for f in files) / 1e6
        print(f"machine: {machine()}")
        print(f"scratch: {scratch} ({total:.0f} MB in {len(files)} files)")
        print(
            f"our SCP: SGC_SCP_PROCESSES={args.processes}, fsync on; "
            f"warm-up: {len(warmup)} small images before each timed run"
        )
        for senders in args.senders:
            print(f"load average before: {load()}", flush=True)
            results: dict[str, list[float]] = {"ours": [], "dcmtk": []}
            for r in range(args.rounds):
                order = ("ours", "dcmtk") if r % 2 == 0 else ("dcmtk", "ours")
                for kind in order:
                    mbps = run_once(kind, files, senders, scratch, args.processes, warmup)
                    results[kind].append(mbps)
                    print(f"  {senders} assoc round {r + 1} {kind:5s} {mbps:7.1f} MB/s", flush=True)
            ours, dcmtk = (statistics.median(results[k]) for k in ("ours", "dcmtk"))
            print(
                f"{senders} association(s): ours {ours:.1f} MB/s, dcmtk storescp {dcmtk:.1f} "
                f"MB/s, ratio {ours / dcmtk:.2f} (median of {args.rounds}; "
                f"load average after: {load()})",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
