"""A job run by a lesion-finder model: the typed result reaches the database and the SR.

The network is untrained (its weights do not matter here); the card is a real lesion card,
so the worker takes the lesion-finder path: every view's prediction stores its findings in
source coordinates, and the SR holds one TID 1410 group per finding besides the view's own.
Runs on SQLite and PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pytest
import torch
from sqlalchemy import select

from db.models import Job, JobState, Prediction, Report
from sgc_core.checkpoint import save_model
from sgc_core.lesion_card import LesionCard
from sgc_core.sde import VPSDE
from sgc_core.unet import architecture_spec, build_score_model
from tests.test_worker_pipeline import ingest_study, make_settings, run_job
from worker.runtime import sessions_for


@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    arch = architecture_spec("default", 3, 1, 64, 8)
    model = build_score_model(arch, VPSDE())
    card = {
        "name": "sgc-lesion-test",
        "version": "0",
        "classes": ["normal", "benign", "malignant"],
        "positive_class": "malignant",
        "image_size": 64,
        "channels": 1,
        "sde": VPSDE().to_dict(),
        "architecture": arch,
        "lesion": LesionCard(k_fine=2, finding_threshold=0.0).to_dict(),
    }
    out = tmp_path_factory.mktemp("lesion") / "lesion"
    save_model(out, model, card)
    return out.with_suffix(".safetensors")


def test_job_stores_located_findings_and_draws_them(
    tmp_path: Path, database_url: str, lesion_model: Path
) -> None:
    settings = make_settings(tmp_path, database_url, lesion_model, [])
    job_id = ingest_study(settings, n=4)
    result = run_job(settings, job_id)
    assert result is not None and result.report_id is not None
    with sessions_for(settings)() as session:
        assert session.get(Job, job_id).state == JobState.done
        preds = session.scalars(select(Prediction).where(Prediction.job_id == job_id)).all()
        assert len(preds) == 4
        n_findings = 0
        for p in preds:
            assert 0.0 <= p.probabilities["malignant"] <= 1.0
            assert p.extra["method"].startswith("lesion-scan")
            for f in p.extra["findings"]:
                n_findings += 1
                r0, c0, r1, c1 = f["box"]
                assert 0 <= r0 < r1 <= 256 and 0 <= c0 < c1 <= 192
        assert n_findings >= 4
        path = settings.resolved_storage_dir / session.get(Report, result.report_id).path
    doc = hd.sr.srread(path)
    groups = doc.content.get_planar_roi_measurement_groups()
    assert len(groups) == 4 + n_findings
