"""The cost of an association: our SCP against dcmtk's storescp --fork, one small image each.

    .venv/bin/python -m benchmarks.associations --before /tmp/sgc-before
    .venv/bin/python -m benchmarks.associations --quick

Why: some modalities and PACS open one association per image or per study, so what the
SCP spends to accept, serve and release an association is paid per image there. Two
measurements per server, each into a fresh server (our SCP with its default settings but
one receive process, so that every association reaches the process timed):

* ``storescu``: ``--count`` associations in sequence, one small MG image (~100 KB) each;
  wall ms per association (including the storescu process's own start) and the server's
  CPU ms per association.
* phases: a pynetdicom SCU in this process times A-ASSOCIATE (request to accept), the
  C-STORE (request to response) and A-RELEASE, medians over ``--count`` associations.

The servers alternate for ``--rounds``; printed per round and as medians, with the ratio
of dcmtk's wall time to ours.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from pydicom import dcmread

from benchmarks.host_cpu import tree_cpu
from benchmarks.ingest import free_port, make_warmup, start_dcmtk, start_ours
from benchmarks.ingest import wait_listening as wait_port


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=40, help="associations per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", type=Path, default=None, help="an older source tree of the node")
    p.add_argument("--quick", action="store_true", help="4 associations, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.count, args.rounds = 4, 1
    return args


def start(kind: str, workdir: Path, port: int, before: Path | None):
    if kind == "dcmtk":
        return start_dcmtk(workdir, port)
    return start_ours(workdir, port, 1, before if kind == "before" else None)


def storescu_each(port: int, images: list[Path], count: int) -> float:
    """``count`` storescu runs in sequence, one image each; wall seconds in all."""
    begin = time.perf_counter()
    for i in range(count):
        image = str(images[i % len(images)])
        subprocess.run(["storescu", "-aec", "SGC_NODE", "127.0.0.1", str(port), image], check=True)
    return time.perf_counter() - begin


def phases(port: int, image: Path, count: int) -> tuple[float, float, float]:
    """Median seconds of A-ASSOCIATE, C-STORE and A-RELEASE seen by a pynetdicom SCU."""
    from pynetdicom import AE

    ds = dcmread(image)
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        assoc = ae.associate("127.0.0.1", port, ae_title="SGC_NODE")
        t1 = time.perf_counter()
        status = assoc.send_c_store(ds)
        t2 = time.perf_counter()
        assoc.release()
        if not status or status.Status != 0:
            raise RuntimeError(f"C-STORE failed: {status}")
        times.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    return tuple(statistics.median(t[k] for t in times) for k in range(3))  # type: ignore[return-value]


def run_once(kind: str, images: list[Path], args, scratch: Path) -> dict[str, float]:
    """One fresh server: ms per association (wall, server CPU) and the three phases in ms."""
    workdir = Path(tempfile.mkdtemp(prefix=f"assoc-{kind}-", dir=scratch))
    port = free_port()
    proc = start(kind, workdir, port, args.before)
    try:
        wait_port(port, proc)
        if kind != "dcmtk":
            time.sleep(3.0)
        storescu_each(port, images, 4)  # untimed: imports, first SQL compilations
        cpu = tree_cpu(proc.pid)
        wall = storescu_each(port, images, args.count)
        cpu = tree_cpu(proc.pid) - cpu
        assoc, store, release = phases(port, images[0], args.count)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    ms = 1000 / args.count
    return {
        "wall": wall * ms,
        "cpu": cpu * ms,
        "associate": 1000 * assoc,
        "c-store": 1000 * store,
        "release": 1000 * release,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    kinds = ["ours", "dcmtk"] + (["before"] if args.before else [])
    scratch = Path(tempfile.mkdtemp(prefix="sgc-assoc-"))
    try:
        images = make_warmup(scratch / "images")
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for r in range(args.rounds):
            for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
                runs[kind].append(run_once(kind, images, args, scratch))
                cells = ", ".join(f"{k} {v:.1f}" for k, v in runs[kind][-1].items())
                print(f"round {r + 1} {kind:6s} ms per association: {cells}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.count} associations per measurement, {args.rounds} rounds, medians (ms)")
    print("| server | storescu wall | server CPU | A-ASSOCIATE | C-STORE | A-RELEASE |")
    print("|---|---|---|---|---|---|")
    medians = {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in runs.items()}
    for kind, m in medians.items():
        print(f"| {kind} | " + " | ".join(f"{v:.1f}" for v in m.values()) + " |")
    ratio = medians["dcmtk"]["wall"] / medians["ours"]["wall"]
    print(f"storescu wall per association, dcmtk / ours: {ratio:.2f}")


if __name__ == "__main__":
    main()
