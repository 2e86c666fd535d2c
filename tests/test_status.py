"""`sgc status` tells the truth about what is in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from db import Delivery, Instance, Job, JobState, Prediction, Report, Study
from db.models import DeliveryState
from db.queries import counts, study_overview
from db.session import make_engine, make_session_factory


def _fill(url: str) -> None:
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        study = Study(study_uid="1.2.826.0.1.1", received_rev=2, jobbed_rev=2)
        inst = Instance(
            study=study,
            series_uid="1.2.826.0.1.2",
            sop_instance_uid="1.2.826.0.1.3",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1.2",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            path="a/b/c.dcm",
            size=100,
            sha256="f" * 64,
        )
        old = Job(study=study, revision=1, state=JobState.done)
        job = Job(study=study, revision=2, state=JobState.done)
        pred = Prediction(
            job=job,
            instance=inst,
            predicted_class="malignant",
            probabilities={"benign": 0.2, "malignant": 0.8},
            log_likelihoods={"benign": -10.0, "malignant": -9.0},
            ood=False,
            model_name="demo",
            model_version="1",
            model_sha256="0" * 64,
            extra={"laterality": "L", "view": "CC"},
        )
        report = Report(job=job, sop_instance_uid="2.25.1", series_uid="2.25.2", path="sr.dcm")
        delivery = Delivery(
            report=report,
            destination="PACS@127.0.0.1:104",
            state=DeliveryState.pending,
            attempts=3,
            last_status=0xA700,
            last_error="archive answered 0xA700",
        )
        s.add_all([study, inst, old, job, pred, report, delivery])
        s.commit()
    engine.dispose()


def test_overview_shows_latest_job_with_predictions_and_deliveries(database_url: str) -> None:
    _fill(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as s:
        (study,) = study_overview(s)
        summary = counts(s)
    engine.dispose()
    assert study["study_uid"] == "1.2.826.0.1.1" and study["settled"]
    assert study["job"]["revision"] == 2
    (pred,) = study["job"]["predictions"]
    assert (pred["laterality"], pred["view"], pred["predicted_class"]) == ("L", "CC", "malignant")
    (delivery,) = study["job"]["reports"][0]["deliveries"]
    assert delivery["last_status"] == 0xA700 and delivery["state"] == "pending"
    assert summary["jobs"]["done"] == 2 and summary["deliveries"]["pending"] == 1


def test_status_command_json_and_table(database_url: str, tmp_path) -> None:
    _fill(database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(SGC_DATABASE_URL=database_url, SGC_DATA_DIR=str(tmp_path), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-m", "sgc_node", "status", "--json"], env=env, capture_output=True
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["studies"][0]["job"]["predictions"][0]["probabilities"]["malignant"] == 0.8
    table = subprocess.run(
        [sys.executable, "-m", "sgc_node", "status"], env=env, capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr
    assert "80.0 %" in table.stdout
    assert "PACS@127.0.0.1:104: pending (archive answered 0xA700)" in table.stdout


def test_status_and_metrics_show_lost_workers_and_poison_jobs(database_url: str, tmp_path) -> None:
    """A poison study (its workers died SGC_MAX_ATTEMPTS times) is visible in `sgc status`
    (row and summary, table and JSON) and on the Prometheus endpoint."""
    import urllib.request

    from db.models import lost_worker_reason
    from sgc_node.metrics import start_metrics_server
    from tests.conftest import free_port

    engine = make_engine(database_url)
    with make_session_factory(engine)() as s:
        poison = Study(study_uid="1.2.826.0.9.1", received_rev=1, jobbed_rev=1)
        retried = Study(study_uid="1.2.826.0.9.2", received_rev=1, jobbed_rev=1)
        s.add_all(
            [
                Job(study=poison, revision=1, state=JobState.failed, attempts=3, lost_attempts=3,
                    error=lost_worker_reason(3)),
                Job(study=retried, revision=1, state=JobState.done, attempts=2, lost_attempts=1),
            ]
        )  # fmt: skip
        s.commit()
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env.update(SGC_DATABASE_URL=database_url, SGC_DATA_DIR=str(tmp_path), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-m", "sgc_node", "status", "--json"], env=env, capture_output=True
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["summary"]["workers_lost"] == {"attempts": 4, "poison_jobs": 1}
    job = next(st["job"] for st in data["studies"] if st["study_uid"] == "1.2.826.0.9.1")
    assert job["state"] == "failed" and job["lost_attempts"] == 3
    assert "worker died 3 times while classifying" in job["error"]
    table = subprocess.run(
        [sys.executable, "-m", "sgc_node", "status"], env=env, capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr
    assert "r1 failed (worker lost x3)" in table.stdout
    assert "worker died 3 times while classifying" in table.stdout
    assert "workers lost while classifying: 4, poison jobs: 1" in table.stdout
    port = start_metrics_server("127.0.0.1", free_port(), database_url)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert "sgc_jobs_poison 1.0" in text and "sgc_job_lost_attempts 4.0" in text
    assert 'sgc_jobs{state="failed"} 1.0' in text
