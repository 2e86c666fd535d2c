"""The Prometheus endpoint of a node process.

The rooms count what they see with prometheus-client metrics of their own (scp/metrics.py,
worker/metrics.py); this module serves them over HTTP (bound to SGC_METRICS_HOST, loopback
by default) and adds gauges read from the database at scrape time: jobs and deliveries by
state, the outbox depth, workers lost while classifying and the poison jobs they left, which
only the database knows across processes.

Under `sgc serve` the SCP and the worker are separate processes: they share
PROMETHEUS_MULTIPROC_DIR and the SCP's endpoint serves the sum of both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


class DatabaseCollector:
    """Gauges computed from the database on every scrape (cheap GROUP BY counts)."""

    def __init__(self, database_url: str) -> None:
        from db.session import make_engine, make_session_factory

        self._engine = make_engine(database_url)
        self._sessions = make_session_factory(self._engine)

    def collect(self) -> Iterator:
        from prometheus_client.core import GaugeMetricFamily

        from db.queries import counts

        try:
            with self._sessions() as session:
                data = counts(session)
        except Exception as exc:  # a scrape must not fail because the DB blinked
            log.warning("metrics: database unavailable: %s", exc)
            return
        jobs = GaugeMetricFamily("sgc_jobs", "Classification jobs by state", labels=["state"])
        for state, n in data["jobs"].items():
            jobs.add_metric([state], n)
        yield jobs
        dels = GaugeMetricFamily("sgc_deliveries", "Report deliveries by state", labels=["state"])
        for state, n in data["deliveries"].items():
            dels.add_metric([state], n)
        yield dels
        depth = GaugeMetricFamily(
            "sgc_queue_depth", "Work recorded but not finished (outbox)", labels=["queue"]
        )
        depth.add_metric(["classify"], data["jobs"]["pending"] + data["jobs"]["running"])
        depth.add_metric(["deliver"], data["deliveries"]["pending"])
        yield depth
        lost = data["workers_lost"]
        yield GaugeMetricFamily(
            "sgc_job_lost_attempts",
            "Classification attempts whose worker died (summed over the jobs in the database)",
            value=lost["attempts"],
        )
        yield GaugeMetricFamily(
            "sgc_jobs_poison",
            "Jobs failed after their workers died on them (SGC_MAX_ATTEMPTS: a poison study)",
            value=lost["poison_jobs"],
        )


class _ProcessMetrics:
    """This process's own counters (the default registry), re-exported into ours."""

    def collect(self) -> Iterator:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def build_registry(database_url: str | None):
    """The registry /metrics serves: process (or multi-process) counters + database gauges."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    if database_url:
        registry.register(DatabaseCollector(database_url))
    return registry


def start_metrics_server(host: str, port: int, database_url: str | None) -> int | None:
    """Serve /metrics on host:port (port 0 disables); return the bound port."""
    if port == 0:
        return None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=build_registry(database_url))
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound


def prepare_multiprocess_dir(path: Path) -> Path:
    """An empty directory for multi-process metrics (stale files would double-count)."""
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.db"):
        f.unlink()
    return path
