"""Ingest throughput: our SCP (fsync on, default settings) against dcmtk's storescp --fork.

Why this peer: dcmtk storescp is native code writing to the same disk, the natural bar for
a Python SCP; ``--fork`` gives each association its own process, as a busy node needs. All
receive the same ~17 MB mammograms from dcmtk storescu in rotating runs (so drifting machine
load hits each), each run into a fresh, empty destination (our node would otherwise
recognise re-sends and skip the write). ``--before DIR`` also runs an older source tree of
the node (``git archive <commit> | tar -x -C DIR``) in the same rounds, so a before/after
table comes from one run. ``--dcmtk-sync-too`` also runs dcmtk with a ``sync`` before its
clock stops (``dcmtk-sync``): dcmtk never fsyncs, so this is the time until its data is on
disk, as ours is at each acknowledgement. Printed: wall-clock MB/s and CPU ms per image (the server's whole
process tree, children included) per run, the medians and best runs and their ratios to
dcmtk, for 1, 4 and 8 concurrent associations by default; beside them the storescu senders'
CPU ms per image and how busy the whole machine was, since the senders share its cores.

    .venv/bin/python -m benchmarks.ingest --count 16 --rounds 3 --before /tmp/sgc-before
    .venv/bin/python -m benchmarks.ingest --quick      # 4 images, 2 rounds: a smoke run

The machine's load average (``/proc/loadavg``) is printed before and after each setting,
because on a shared machine it moves the absolute numbers far more than the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from benchmarks.host_cpu import children_cpu, load, machine, machine_ticks, tree_cpu
from tests.helpers.mg import MGSpec, write_mg


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


def start_ours(
    workdir: Path,
    port: int,
    processes: int | None = None,
    source: Path | None = None,
    fsync: bool = True,
) -> subprocess.Popen:
    """``sgc scp`` with its defaults (fsync on); ``source``: run that source tree instead;
    ``fsync=False`` only to measure what durability costs (dcmtk does not fsync)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(
        SGC_DATA_DIR=str(workdir / "sgc-data"),
        SGC_HOST="127.0.0.1",
        SGC_PORT=str(port),
        SGC_FSYNC="true" if fsync else "false",
        SGC_LOG_LEVEL="WARNING",
    )
    if processes is not None:
        env["SGC_SCP_PROCESSES"] = str(processes)
    cmd = [str(Path(sys.executable).with_name("sgc")), "scp"]
    if source is not None:
        cmd = [sys.executable, "-c", _RUN_SOURCE_TREE, str(source), "scp"]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)


# The venv's editable install puts a finder for our packages ahead of sys.path (so
# PYTHONPATH alone would still run the working tree): drop it, then run the given tree.
_RUN_SOURCE_TREE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv[1])
from sgc_node.cli import main
sys.argv = ["sgc", *sys.argv[2:]]
main()
"""


class Run(NamedTuple):
    """One timed run: wall-clock MB/s; CPU ms per image of the server's process tree and of
    the storescu senders; the fraction of the machine's CPU time busy while it ran."""

    mbps: float
    cpu: float
    sender_cpu: float
    busy: float


def start_dcmtk(workdir: Path, port: int, *_: object) -> subprocess.Popen:
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


def timed_sync() -> float:
    """Seconds that ``sync`` takes: the write-back a server left to the kernel.

    Why: dcmtk acknowledges an image once it is in the page cache and never fsyncs; in its
    fast runs none of a run's data reaches the disk before its clock stops, while our node
    has each file and its catalog row on disk before its status. The kernel's write-back
    threads spend that CPU, so it is not in the server's CPU per image.
    """
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def run_once(
    kind: str,
    files: list[Path],
    senders: int,
    scratch: Path,
    processes: int | None = None,
    warmup: list[Path] | None = None,
    source: Path | None = None,
) -> Run:
    """One timed run into a fresh server.

    ``kind`` is ``dcmtk``, ``dcmtk-sync`` (dcmtk, its clock stopped only once ``sync``
    has put what it wrote on disk), ``no-fsync`` (our node without fsync) or a name for our
    node (``source`` picks its source tree).
    ``warmup`` images are sent first, each on its own association, four at a time, and
    are not timed: a node runs for months, so what is measured is steady-state ingest,
    not the first association's lazy imports and first SQL compilations in each process
    (with several SCP processes, new connections are hashed across all of them).
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"ingest-{kind}-", dir=scratch))
    port = free_port()
    dcmtk = kind.startswith("dcmtk")
    if dcmtk:
        proc = start_dcmtk(workdir, port)
    else:
        proc = start_ours(workdir, port, processes, source, fsync=kind != "no-fsync")
    warmup = warmup or []
    try:
        wait_listening(port, proc)
        if not dcmtk:  # receive processes bind a moment after the first one answers
            time.sleep(3.0)
        for i in range(0, len(warmup), 4):
            send(port, [[f] for f in warmup[i : i + 4]])
        batches = [files[i::senders] for i in range(senders)]
        cpu, senders_cpu, ticks = tree_cpu(proc.pid), children_cpu(), machine_ticks()
        seconds = send(port, batches)
        if kind == "dcmtk-sync":
            seconds += timed_sync()
        cpu = tree_cpu(proc.pid) - cpu
        senders_cpu = children_cpu() - senders_cpu
        busy = [b - a for a, b in zip(ticks, machine_ticks(), strict=True)]
        if not dcmtk:
            stored = list((workdir / "sgc-data" / "storage").rglob("*.dcm"))
        else:
            stored = list((workdir / "storescp-out").iterdir())
        if len(stored) != len(files) + len(warmup):
            raise RuntimeError(f"{kind}: {len(stored)} of {len(files) + len(warmup)} stored")
        mbps = sum(f.stat().st_size for f in files) / 1e6 / seconds
        per_image = 1000 / len(files)
        return Run(mbps, cpu * per_image, senders_cpu * per_image, busy[0] / max(busy[1], 1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16, help="images per run")
    parser.add_argument("--size-mb", type=float, default=17.0, help="size of each image")
    parser.add_argument("--rounds", type=int, default=3, help="rotating rounds per setting")
    parser.add_argument("--scratch", type=Path, default=None, help="disk to write to")
    parser.add_argument(
        "--senders",
        type=int,
        nargs="+",
        default=[1, 4, 8],
        help="concurrent associations per setting (default: 1 4 8)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="SGC_SCP_PROCESSES for our SCP (default: the node's default)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="an older source tree of the node, run in the same rounds as 'before'",
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="time from a cold server (no untimed small images first)",
    )
    parser.add_argument(
        "--no-fsync-too",
        action="store_true",
        help="also run our SCP with SGC_FSYNC=false ('no-fsync'): what durability costs",
    )
    parser.add_argument(
        "--dcmtk-sync-too",
        action="store_true",
        help="also run dcmtk with a sync before its clock stops ('dcmtk-sync'): its data on disk",
    )
    parser.add_argument("--quick", action="store_true", help="small run: 4 images, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.count, args.rounds = min(args.count, 4), min(args.rounds, 2)
    return args


def run_setting(args, senders: int, files, warmup, scratch: Path) -> dict[str, list[tuple]]:
    """Rotating rounds of every server at ``senders`` associations; each run's (MB/s, CPU)."""
    kinds = ["ours", "dcmtk"] + (["before"] if args.before else [])
    kinds += ["no-fsync"] if args.no_fsync_too else []
    kinds += ["dcmtk-sync"] if args.dcmtk_sync_too else []
    results: dict[str, list[Run]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            source = args.before if kind == "before" else None
            run = run_once(kind, files, senders, scratch, args.processes, warmup, source)
            results[kind].append(run)
            print(
                f"  {senders} assoc round {r + 1} {kind:10s} {run.mbps:7.1f} MB/s "
                f"{run.cpu:6.1f} ms CPU/image, senders {run.sender_cpu:5.1f} ms, "
                f"machine {100 * run.busy:3.0f} % busy",
                flush=True,
            )
    return results


def summarise(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    """Per server: median and best MB/s; medians of the CPU ms per image (server, senders)
    and of the machine's busy fraction.

    Why the best too: on these hosts dcmtk's runs are bimodal (one run at ~13-16 ms of CPU
    per image, the next at ~45, alternating even when only dcmtk runs), so a median of 3-7
    rounds lands in either mode. The best of the rounds compares each server at its
    fastest. In its fast runs none of dcmtk's data reaches the disk before its clock stops;
    ``dcmtk-sync`` (see :func:`timed_sync`) is dcmtk with its data on disk."""
    return {
        k: {
            "median": statistics.median(x.mbps for x in v),
            "best": max(x.mbps for x in v),
            "cpu": statistics.median(x.cpu for x in v),
            "sender_cpu": statistics.median(x.sender_cpu for x in v),
            "busy": statistics.median(x.busy for x in v),
        }
        for k, v in runs.items()
    }


def table_rows(senders: int, summary: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: each server's medians, best, and both ratios to dcmtk."""
    ref = summary["dcmtk"]
    return [
        f"| {senders} | {kind} | {s['median']:.0f} | {s['best']:.0f} | {s['cpu']:.0f} | "
        f"{s['sender_cpu']:.0f} | {100 * s['busy']:.0f} % | "
        f"{s['median'] / ref['median']:.2f} | {s['best'] / ref['best']:.2f} |"
        for kind, s in summary.items()
    ]


def main() -> None:
    args = parse_args()
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: install dcmtk")
    scratch = Path(tempfile.mkdtemp(prefix="sgc-ingest-", dir=args.scratch))
    table = []
    try:
        files = make_images(scratch / "images", args.count, args.size_mb)
        warmup = [] if args.no_warmup else make_warmup(scratch / "warmup")
        total = sum(f.stat().st_size for f in files) / 1e6
        print(f"machine: {machine()}")
        print(f"scratch: {scratch} ({total:.0f} MB in {len(files)} files)")
        print(
            f"our SCP: SGC_SCP_PROCESSES={args.processes or 'default'}, fsync on; before: "
            f"{args.before or 'not run'}; no-fsync: {'run' if args.no_fsync_too else 'not run'}; "
            f"dcmtk-sync: {'run' if args.dcmtk_sync_too else 'not run'}; "
            f"warm-up: {len(warmup)} small images before each run"
        )
        for senders in args.senders:
            print(f"load average before: {load()}", flush=True)
            runs = run_setting(args, senders, files, warmup, scratch)
            print(f"load average after: {load()}", flush=True)
            table += table_rows(senders, summarise(runs))
        print(f"\n{args.rounds} rounds: MB/s wall clock (median, best), medians of the rest")
        print(
            "| associations | server | MB/s median | MB/s best | CPU ms/image "
            "| senders' CPU ms/image | machine busy "
            "| ratio to dcmtk, medians | ratio to dcmtk, bests |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(table))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
