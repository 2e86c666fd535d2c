"""DICOMweb both ways with a real peer: Orthanc's DICOMweb plugin pushes a study to the node by
STOW-RS, the node classifies it, and its SR goes back into that Orthanc by STOW-RS."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Delivery, DeliveryState, Instance, Job
from sgc_config.settings import Settings
from tests.helpers.mg import write_study
from tests.helpers.nodeproc import count_rows, wait_until
from tests.helpers.orthanc import orthanc_server
from tests.helpers.stow import start_web, web_node, web_url
from tests.test_worker_pipeline import deliver_until_settled
from worker import classify, lease
from worker.runtime import classifier_for

pytestmark = pytest.mark.orthanc
TOKEN = "orthanc-pushes-with-this"


def test_orthanc_stows_a_study_in_and_gets_the_sr_back_by_stow(
    tmp_path: Path, tiny_model: Path
) -> None:
    node = web_node(tmp_path / "node", web_token=TOKEN)
    try:
        node.start_scp()
        start_web(node)
        servers = {
            "node": {
                "Url": f"{web_url(node)}/",
                "HttpHeaders": {"Authorization": f"Bearer {TOKEN}"},
            }
        }
        with orthanc_server(tmp_path / "orthanc", extra={"DicomWeb": {
            "Enable": True, "Root": "/dicom-web/", "Servers": servers,
        }}) as orthanc:  # fmt: skip
            paths = write_study(tmp_path / "study", n=4)
            for path in paths:
                orthanc.request("POST", "/instances", path.read_bytes())
            (study_id,) = orthanc.get("/studies")
            orthanc.request("POST", "/dicom-web/servers/node/stow", {"Resources": [study_id]})

            sessions = node.sessions()
            assert count_rows(sessions, Instance) == 4
            job_id = wait_until(lambda: _job_id(sessions), "the pushed study to become a job")

            settings = Settings(
                data_dir=Path(node.env["SGC_DATA_DIR"]),
                model=tiny_model,
                device="cpu",
                archive=f"dicomweb+{orthanc.url}/dicom-web",  # type: ignore[arg-type]
                delivery_retry_base=0.2,
                delivery_retry_max=0.5,
            )
            token = lease.claim(sessions, job_id, lease.lease_seconds(settings))
            result = classify.run(sessions, settings, classifier_for(settings), job_id, token)
            assert result is not None and result.report_id is not None
            deliver_until_settled(settings, result.report_id)

            with sessions() as s:
                (delivery,) = s.scalars(select(Delivery)).all()
                assert delivery.state == DeliveryState.sent and delivery.last_status == 0
                study_uid = s.get(Job, job_id).study.study_uid
                sr_uid = delivery.report.sop_instance_uid
            (sr,) = orthanc.sr_instances(study_uid)
            assert sr["MainDicomTags"]["SOPInstanceUID"] == sr_uid
    finally:
        node.stop_all()


def _job_id(sessions) -> int | None:
    with sessions() as s:
        return s.scalars(select(Job.id)).first()
