"""The Prometheus endpoint: loopback by default, database gauges that follow the rows."""

from __future__ import annotations

import urllib.request

from db import Job, JobState, Study
from db.session import make_engine, make_session_factory
from sgc_config.settings import Settings
from sgc_node.metrics import start_metrics_server
from tests.conftest import free_port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_metrics_bind_loopback_by_default() -> None:
    assert Settings.model_fields["metrics_host"].default == "127.0.0.1"


def test_job_gauges_follow_the_database(database_url: str) -> None:
    port = start_metrics_server("127.0.0.1", free_port(), database_url)
    assert 'sgc_jobs{state="pending"} 0.0' in _scrape(port)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as s:
        study = Study(study_uid="1.2.3")
        s.add_all([study, Job(study=study, revision=1), Job(study=study, revision=2)])
        s.add(Job(study=study, revision=3, state=JobState.failed))
        s.commit()
    engine.dispose()
    text = _scrape(port)
    assert 'sgc_jobs{state="pending"} 2.0' in text
    assert 'sgc_jobs{state="failed"} 1.0' in text
    assert 'sgc_queue_depth{queue="classify"} 2.0' in text


def test_port_zero_disables_the_endpoint() -> None:
    assert start_metrics_server("127.0.0.1", 0, None) is None
