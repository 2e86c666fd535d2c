"""The catalog's cost per received instance: ``scp.catalog.record_instance``, this tree against
an older one, on SQLite (the embedded default) and PostgreSQL.

    .venv/bin/python -m benchmarks.catalog_speed --before /tmp/sgc-before
    .venv/bin/python -m benchmarks.catalog_speed --before DIR --postgres

Why: the SCP commits one catalog transaction per C-STORE before it answers, on the receive
thread, so its Python time is part of the ingest's CPU per image (docs/benchmarks.md,
"Ingest"). Each tree runs in its own process (``--before``: a source tree, as in
benchmarks/ingest.py) on a fresh database migrated by that tree: 50 untimed records, then
``--count`` new instances (4 per study, as a 4-view study arrives) and the same instances
again (identical re-sends, the "unchanged" path). The trees alternate for ``--rounds``.
Printed per tree and path: CPU ms per record (this process's CPU time, median of the
rounds) and wall ms, and the ratio before / this tree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.services import postgres_database

# Runs in a child process: times one tree (its path first on sys.path) on one database.
_CHILD = """
import json, sys, time
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv[1])
from db.session import make_engine, make_session_factory, upgrade
from scp.catalog import ReceivedInstance, record_instance
from scp.storage import StoredFile

url, count = sys.argv[2], int(sys.argv[3])
upgrade(url)
sessions = make_session_factory(make_engine(url))


def record(i):
    item = ReceivedInstance(
        f"1.2.826.0.1.{i // 4}", "1.2.826.0.2", f"1.2.826.0.3.{i}",
        "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.1.2.1", "STORESCU", True,
    )
    return record_instance(sessions, item, StoredFile(f"s/{i}.dcm", 17_000_000, "ab" * 32, "new"))


def timed(numbers):
    cpu, wall = time.process_time(), time.perf_counter()
    changes = {record(i) for i in numbers}
    n = len(numbers)
    return 1000 * (time.process_time() - cpu) / n, 1000 * (time.perf_counter() - wall) / n, changes


for i in range(10**6, 10**6 + 50):
    record(i)
new = timed(range(count))
again = timed(range(count))
assert new[2] == {"new"} and again[2] == {"unchanged"}, (new[2], again[2])
print(json.dumps({"new": new[:2], "unchanged": again[:2]}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="an older source tree")
    p.add_argument("--count", type=int, default=400, help="new instances per run")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--postgres", action="store_true", help="also run on PostgreSQL (SGC_TEST_PG_ADMIN)"
    )
    return p.parse_args(argv)


@contextlib.contextmanager
def fresh_database(kind: str, scratch: Path) -> Iterator[str]:
    """An empty database for one run, removed afterwards: a SQLite file, or a PostgreSQL
    database from the tests' and benchmarks' shared helper (``SGC_TEST_PG_ADMIN``)."""
    if kind == "postgresql":
        with postgres_database("sgc_bench_") as url:
            yield url
        return
    path = scratch / f"{uuid.uuid4().hex}.db"
    try:
        yield f"sqlite:///{path}"
    finally:
        path.unlink(missing_ok=True)


def run_tree(tree: Path, kind: str, count: int, scratch: Path) -> dict:
    """One run of ``tree`` on a fresh database of ``kind``."""
    with fresh_database(kind, scratch) as url:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(tree), url, str(count)],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    trees = {"this tree": Path(__file__).resolve().parents[1], "before": args.before.resolve()}
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    scratch = Path(tempfile.mkdtemp(prefix="sgc-catalog-"))
    print(
        f"{args.count} new instances then {args.count} identical re-sends per run, "
        f"{args.rounds} alternating rounds; before: {args.before}"
    )
    for kind in kinds:
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name in list(trees)[:: 1 if r % 2 == 0 else -1]:
                runs[name].append(run_tree(trees[name], kind, args.count, scratch))
                cpu, wall = runs[name][-1]["new"]
                print(f"  {kind} round {r + 1} {name:9s} new: {cpu:.3f} ms CPU, {wall:.3f} ms wall")
        for path in ("new", "unchanged"):
            cpu = {n: statistics.median(x[path][0] for x in runs[n]) for n in trees}
            wall = {n: statistics.median(x[path][1] for x in runs[n]) for n in trees}
            print(
                f"{kind} {path:9s} CPU ms per record: this tree {cpu['this tree']:.3f}, "
                f"before {cpu['before']:.3f} ({cpu['before'] / cpu['this tree']:.2f}x); "
                f"wall ms: {wall['this tree']:.3f} / {wall['before']:.3f}"
            )


if __name__ == "__main__":
    main()
