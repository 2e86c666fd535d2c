"""End-to-end latency: from the last instance's acknowledgement to the SR stored in Orthanc.

What it measures, on the embedded default (SQLite, the filesystem broker) and on Redis +
PostgreSQL, with the node's default settings otherwise (``SGC_STABLE_AGE`` 5 s included):

* latency: 4-view studies sent one at a time, each after the previous one's SR arrived (so no
  study waits behind another), with one worker; per study the seconds from the C-STORE
  response of its last instance to Orthanc holding its SR, p50 and p95 over ``--studies``;
* throughput: the same number of studies sent at once, with 1 and then 2 workers; studies per
  hour from the first byte to the last SR;
* where the time goes, per study from the database's own timestamps: settling (last instance
  to job created), queue (job created to started), classification (started to finished: read,
  preprocess, classify, build the reports), delivery (finished to the SR in Orthanc).

The node runs as ``sgc scp`` plus ``sgc worker`` processes (each worker consumes both queues,
as ``sgc serve``'s does) delivering to a real Orthanc. The model is ``--model`` (default: the
bundled whole-view model, ~1 s of CPU per study here; the default lesion finder takes ~10 s,
too slow for 20 studies x 3 runs x 2 stacks on this shared machine).

    .venv/bin/python -m benchmarks.latency --studies 20
    .venv/bin/python -m benchmarks.latency --studies 4 --stacks embedded   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

from benchmarks.host_cpu import load
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import NodeProcesses
from tests.helpers.orthanc import orthanc_server
from tests.helpers.services import (
    PG_ADMIN_URL,
    free_port,
    postgres_database,
)
from tests.helpers.stacks import stack_settings

ROOT = Path(__file__).resolve().parents[1]

IDLE_SECONDS = 5.0
DEFAULT_MODEL = ROOT / "sgc_core" / "models" / "sgc-demo-mammo.safetensors"


class SRWatch:
    """Polls Orthanc's change log; records when each study's first SR series appears."""

    def __init__(self, orthanc, period: float = 0.05) -> None:
        self.orthanc, self.period = orthanc, period
        self.arrived: dict[str, float] = {}
        self._since = int(orthanc.get("/changes?last")["Last"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            changes = self.orthanc.get(f"/changes?since={self._since}&limit=1000")
            now = time.time()
            for change in changes["Changes"]:
                if change["ChangeType"] == "NewSeries":
                    series = self.orthanc.get(f"/series/{change['ID']}")
                    if series["MainDicomTags"].get("Modality") == "SR":
                        study = self.orthanc.get(f"/studies/{series['ParentStudy']}")
                        uid = study["MainDicomTags"]["StudyInstanceUID"]
                        self.arrived.setdefault(uid, now)
            self._since = int(changes["Last"])

    def wait(self, uids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(u in self.arrived for u in uids):
            if time.monotonic() > deadline:
                missing = [u for u in uids if u not in self.arrived]
                raise SystemExit(f"no SR after {timeout:.0f} s for {len(missing)} studies")
            time.sleep(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def send_study(port: int, files: list[Path]) -> float:
    """One association per study (pynetdicom); returns the time of the last C-STORE response."""
    from pynetdicom import AE

    from tests.helpers.mg import MG_FOR_PRESENTATION

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(MG_FOR_PRESENTATION)
    assoc = ae.associate("127.0.0.1", port, ae_title="SGC_NODE")
    if not assoc.is_established:
        raise SystemExit("the node refused the association")
    try:
        for path in files:
            rsp = assoc.send_c_store(path)
            if not rsp or rsp.Status != 0:
                raise SystemExit(f"C-STORE of {path.name} failed: {rsp}")
        return time.time()
    finally:
        assoc.release()


@contextlib.contextmanager
def stack_database(
    stack: str, sqlite_path: Path, prefix: str, migrate: bool = False
) -> Iterator[str]:
    """A fresh database URL of the stack: SQLite at ``sqlite_path`` (the embedded default), or
    a throw-away PostgreSQL database named with ``prefix``, migrated first when ``migrate``.
    One helper for the latency and soak benchmarks, which both pick their stack by its URL."""
    if stack == "embedded":
        yield f"sqlite:///{sqlite_path}"
        return
    with postgres_database(prefix) as url:
        if migrate:
            from db.session import upgrade

            upgrade(url)
        yield url


@contextlib.contextmanager
def running_node(stack: str, folder: Path, model: Path, workers: int):
    """A fresh Orthanc and ``sgc scp`` + ``workers`` x ``sgc worker`` of ``stack`` sending to it.

    A fresh archive per run: an SR's UIDs derive from its study, so a study sent again would
    find its SR already stored and Orthanc would log no new series for it."""
    with (
        orthanc_server(folder / "orthanc") as orthanc,
        stack_database(stack, folder / "data" / "sgc.db", "sgc_lat_") as url,
        stack_settings(url) as extra,
    ):
        node = NodeProcesses.create(
            folder,
            port=free_port(),
            archive=orthanc.node,
            model=model,
            device="cpu",
            log_level="WARNING",
            **extra,
        )
        try:
            node.start_scp()
            for i in range(workers):
                node.start(f"worker{i}", "worker")
            watch = SRWatch(orthanc)
            try:
                yield node, watch
            finally:
                watch.stop()
        finally:
            node.stop_all()


def stages(node: NodeProcesses, arrived: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per study: settle, queue, classify and deliver seconds from the database's timestamps."""
    from sqlalchemy import select

    from db.models import Job, Study

    out = {}
    with node.sessions()() as s:
        rows = s.execute(select(Study, Job).join(Job, Job.study_id == Study.id)).all()
    for study, job in rows:
        if study.study_uid not in arrived or job.finished_at is None:
            continue

        def ts(value) -> float:
            return value.replace(tzinfo=value.tzinfo or UTC).timestamp()

        out[study.study_uid] = {
            "settle": ts(job.created_at) - ts(study.last_received_at),
            "queue": ts(job.started_at) - ts(job.created_at),
            "classify": ts(job.finished_at) - ts(job.started_at),
            "deliver": arrived[study.study_uid] - ts(job.finished_at),
        }
    return out


def database_counters(url: str) -> dict[str, float]:
    """PostgreSQL's own counters of the node's database (empty for SQLite): commits, rows
    written, bytes on disk."""
    if not url.startswith("postgresql"):
        return {}
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted, "
            "pg_database_size(datname) FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    return {"commits": row[0], "rows_written": row[1], "database_bytes": row[2]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def latency_run(stack, folder, model, studies, warmup) -> dict:
    """Studies one at a time, one worker: the latency of a study that waits for nothing."""
    with running_node(stack, folder, model, 1) as (node, watch):
        send_study(node.port, warmup[0])  # the worker loads its model: off the clock
        watch.wait([study_uid(warmup[0])], 300)
        acked = {}
        for files in studies:
            uid = study_uid(files)
            acked[uid] = send_study(node.port, files)
            watch.wait([uid], 300)
        lat = [watch.arrived[u] - acked[u] for u in acked]
        parts = stages(node, {u: watch.arrived[u] for u in acked})
    # The goal's form: what a study waits beyond its own classification.
    beyond = [watch.arrived[u] - acked[u] - parts[u]["classify"] for u in acked]
    return {
        "p50": statistics.median(lat),
        "p95": percentile(lat, 0.95),
        "max": max(lat),
        "beyond_classify_p50": statistics.median(beyond),
        "beyond_classify_p95": percentile(beyond, 0.95),
        "classify_p95": percentile([p["classify"] for p in parts.values()], 0.95),
        "stages_median": {
            k: statistics.median(p[k] for p in parts.values())
            for k in ("settle", "queue", "classify", "deliver")
        },
        "latencies": [round(v, 3) for v in lat],
    }


def throughput_run(stack, folder, model, studies, warmup, workers: int) -> dict:
    """All studies at once (one association each, in turn): studies per hour to the last SR."""
    with running_node(stack, folder, model, workers) as (node, watch):
        for files in warmup[:workers]:  # every worker loads its model first
            send_study(node.port, files)
        watch.wait([study_uid(f) for f in warmup[:workers]], 300)
        idle = database_counters(node.database_url)
        time.sleep(IDLE_SECONDS)  # what the node commits doing nothing (sweeper, leases)
        before = database_counters(node.database_url)
        start = time.time()
        for files in studies:
            send_study(node.port, files)
        uids = [study_uid(f) for f in studies]
        watch.wait(uids, 1800)
        seconds = max(watch.arrived[u] for u in uids) - start
        parts = stages(node, {u: watch.arrived[u] for u in uids})
        time.sleep(1.0)  # PostgreSQL publishes its statistics about every 0.5 s
        after = database_counters(node.database_url)
    per_study = {k: (after[k] - before[k]) / len(studies) for k in after}
    idle_rate = {k: (before[k] - idle[k]) / IDLE_SECONDS for k in before}
    return {
        "database_per_study": per_study,
        "database_idle_per_second": idle_rate,
        "workers": workers,
        "seconds": seconds,
        "studies_per_hour": 3600 * len(studies) / seconds,
        "classify_median": statistics.median(p["classify"] for p in parts.values()),
        "queue_max": max(p["queue"] for p in parts.values()),
    }


def study_uid(files: list[Path]) -> str:
    from pydicom import dcmread

    return str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--stacks", nargs="+", default=["embedded", "redis+postgresql"])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rows", type=int, default=1152, help="image rows (cols = 7/9 of it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-throughput", action="store_true", help="the latency runs only")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sgc-latency-"))
    cols = args.rows * 7 // 9 // 2 * 2
    studies = [write_study(folder / "in" / f"{i:03d}", rows=args.rows, cols=cols) for i in range(args.studies)]  # fmt: skip
    warmup = [write_study(folder / "warm" / f"{i}", rows=args.rows, cols=cols) for i in range(4)]
    size = sum(p.stat().st_size for p in studies[0]) / 1e6
    print(f"{args.studies} studies of 4 x {args.rows}x{cols} MG ({size:.1f} MB per study); model {args.model.name}")  # fmt: skip
    figures: dict[str, dict] = {}
    try:
        run_stacks(args, folder, studies, warmup, figures)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # ~1 GB of images and node data
    summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


def run_stacks(args, folder: Path, studies, warmup, figures: dict) -> None:
    for stack in args.stacks:
        run = folder / stack
        print(f"[{stack}] load average before: {load()}", flush=True)
        lat = latency_run(stack, run / "lat", args.model, studies, warmup)
        print(f"[{stack}] latency: {json.dumps(lat)}", flush=True)
        figures[stack] = {"latency": lat, "throughput": []}
        for workers in () if args.no_throughput else (1, 2):
            tp = throughput_run(stack, run / f"tp{workers}", args.model, studies, warmup, workers)
            print(f"[{stack}] throughput: {json.dumps(tp)}", flush=True)
            figures[stack]["throughput"].append(tp)
        print(f"[{stack}] load average after: {load()}", flush=True)


def summary(figures: dict) -> None:
    print(
        "\n| stack | p50 (s) | p95 (s) | p95 beyond classification (s) | settle | queue | "
        "classify | deliver | studies/h, 1 worker | 2 workers |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for stack, f in figures.items():
        lat, st = f["latency"], f["latency"]["stages_median"]
        tp = {t["workers"]: t["studies_per_hour"] for t in f["throughput"]}
        print(
            f"| {stack} | {lat['p50']:.2f} | {lat['p95']:.2f} | "
            f"{lat['beyond_classify_p95']:.2f} | {st['settle']:.2f} | {st['queue']:.2f} | "
            f"{st['classify']:.2f} | {st['deliver']:.2f} | "
            f"{tp.get(1, float('nan')):.0f} | {tp.get(2, float('nan')):.0f} |"
        )


if __name__ == "__main__":
    main()
