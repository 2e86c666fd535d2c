"""SR delivery on every link: DIMSE over TLS to dcmtk `storescp +tls`, and STOW-RS to the
node's own door over HTTP and HTTPS with client certificates; the same outbox states for all
(a refused attempt stays pending with its reason, the next one is sent)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from pydicom import dcmread
from sqlalchemy import select

from db.models import Delivery, DeliveryState, Instance, Job, JobState, Report, Study
from db.session import upgrade
from sgc_config.settings import Settings
from tests.conftest import free_port, require_binary
from tests.helpers.mg import MGSpec, write_mg
from tests.helpers.nodeproc import count_rows, port_open, wait_until
from tests.helpers.stow import start_web, web_node
from tests.helpers.tls import issue, make_ca
from worker.deliver import create_deliveries, deliver_pending
from worker.runtime import sessions_for


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    ca = make_ca(tmp_path, "hospital-ca")
    return {
        "ca": ca,
        "archive": issue(tmp_path, "archive", ca),
        "node": issue(tmp_path, "node", ca),
        "rogue-ca": make_ca(tmp_path, "rogue-ca"),
    }


@pytest.fixture
def storescp_tls(tmp_path: Path, pki) -> Iterator[tuple[int, Path]]:
    """dcmtk storescp on TLS that asks for a client certificate the hospital CA signed."""
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    cert, key = pki["archive"]
    proc = subprocess.Popen(
        [require_binary("storescp"), "-aet", "PEER", "-od", str(out),
         "+tls", str(key), str(cert), "-pw", "+cf", str(pki["ca"][0]), "-rc", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until(lambda: port_open(port), "storescp +tls to listen", 30, [proc])
    yield port, out
    proc.terminate()
    proc.wait(10)


def _settings(tmp_path: Path, archive: str, **overrides: object) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        archive=archive,  # type: ignore[arg-type]
        delivery_retry_base=0.2,
        delivery_retry_max=0.5,
        **overrides,  # type: ignore[arg-type]
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    return settings


def _report(settings: Settings, tmp_path: Path) -> tuple[int, str]:
    """A report row whose file is in storage, with its pending Delivery rows."""
    spec = MGSpec(rows=64, cols=48)
    relpath = f"reports/{spec.sop_instance_uid}.dcm"
    write_mg(settings.resolved_storage_dir / relpath, spec)
    with sessions_for(settings).begin() as session:
        study = Study(study_uid=spec.study_uid, received_rev=1, jobbed_rev=1)
        session.add(study)
        session.flush()
        job = Job(study_id=study.id, revision=1, state=JobState.done)
        session.add(job)
        session.flush()
        report = Report(
            job_id=job.id,
            sop_instance_uid=spec.sop_instance_uid,
            series_uid=spec.series_uid,
            path=relpath,
        )
        session.add(report)
        session.flush()
        create_deliveries(session, report, settings)
        return report.id, spec.sop_instance_uid


def _attempt(settings: Settings, report_id: int) -> Delivery:
    """One due attempt of the report's delivery (waiting for its backoff first)."""
    sessions = sessions_for(settings)
    with sessions() as s:
        due = s.scalars(select(Delivery.next_attempt_at)).one()
    if due is not None:
        time.sleep(0.6)
    deliver_pending(sessions, settings, report_id)
    with sessions() as s:
        return s.scalars(select(Delivery)).one()


def test_sr_delivery_over_dimse_tls(tmp_path: Path, pki, storescp_tls) -> None:
    port, out = storescp_tls
    archive = f"PEER@127.0.0.1:{port}"
    node_cert, node_key = pki["node"]
    without_cert = _settings(tmp_path, archive, archive_tls_ca=pki["ca"][0])
    report_id, sop_uid = _report(without_cert, tmp_path)

    refused = _attempt(without_cert, report_id)  # storescp asks for a client certificate
    assert refused.state == DeliveryState.pending and refused.attempts == 1
    assert "PEER@127.0.0.1" in refused.last_error and "TLS" in refused.last_error

    wrong_ca = without_cert.model_copy(
        update={"archive_tls_ca": pki["rogue-ca"][0], "archive_tls_cert": node_cert,
                "archive_tls_key": node_key}
    )  # fmt: skip
    assert _attempt(wrong_ca, report_id).state == DeliveryState.pending  # archive not trusted
    assert not list(out.iterdir())

    good = without_cert.model_copy(
        update={"archive_tls_cert": node_cert, "archive_tls_key": node_key}
    )
    sent = _attempt(good, report_id)
    assert sent.state == DeliveryState.sent and sent.last_status == 0 and sent.attempts == 3
    (received,) = out.iterdir()
    assert dcmread(received).SOPInstanceUID == sop_uid


def test_sgc_send_over_tls(tmp_path: Path, pki, storescp_tls) -> None:
    port, out = storescp_tls
    path = write_mg(tmp_path / "a.dcm", MGSpec(rows=64, cols=48))
    cert, key = pki["node"]
    base = [
        ".venv/bin/python",
        "-m",
        "sgc_node",
        "send",
        str(path),
        "--to",
        f"PEER@127.0.0.1:{port}",
    ]
    ok = subprocess.run(
        [*base, "--tls-ca", str(pki["ca"][0]), "--tls-cert", str(cert), "--tls-key", str(key)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0 and "sent 1, failed 0" in ok.stdout, ok.stderr
    plain = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "failed" in plain.stderr and "Traceback" not in plain.stderr
    half = subprocess.run([*base, "--tls-cert", str(cert)], capture_output=True, text=True)
    assert half.returncode == 2 and "--tls-key" in half.stderr
    assert len(list(out.iterdir())) == 1


def test_sr_delivery_by_stow_to_the_door_with_token_and_client_certificate(
    tmp_path: Path, pki
) -> None:
    server_cert, server_key = pki["archive"]
    door = web_node(
        tmp_path / "door", web_token="right", web_tls_cert=server_cert,
        web_tls_key=server_key, web_tls_ca=pki["ca"][0],
    )  # fmt: skip
    try:
        start_web(door)
        archive = f"dicomweb+https://127.0.0.1:{door.env['SGC_WEB_PORT']}"
        cert, key = pki["node"]
        tls = {"archive_tls_ca": pki["ca"][0], "archive_tls_cert": cert, "archive_tls_key": key}
        wrong = _settings(tmp_path, archive, archive_token="wrong", **tls)
        report_id, sop_uid = _report(wrong, tmp_path)

        refused = _attempt(wrong, report_id)
        assert refused.state == DeliveryState.pending and "HTTP 401" in refused.last_error
        no_cert = wrong.model_copy(
            update={
                "archive_token": SecretStr("right"),
                "archive_tls_cert": None,
                "archive_tls_key": None,
            }
        )
        refused = _attempt(no_cert, report_id)  # the door asks for a client certificate
        assert refused.state == DeliveryState.pending and "cannot STOW" in refused.last_error

        right = wrong.model_copy(update={"archive_token": no_cert.archive_token})
        sent = _attempt(right, report_id)
        assert sent.state == DeliveryState.sent and sent.last_status == 0
        with door.sessions()() as s:
            assert s.scalars(select(Instance.sop_instance_uid)).all() == [sop_uid]
        assert count_rows(door.sessions(), Instance) == 1
    finally:
        door.stop_all()


def test_stow_delivery_to_an_archive_that_never_answers_fails_at_the_give_up_time(
    tmp_path: Path,
) -> None:
    archive = f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web"  # nobody listens
    settings = _settings(tmp_path, archive, delivery_give_up=1.0)
    report_id, _ = _report(settings, tmp_path)
    first = _attempt(settings, report_id)
    assert first.state == DeliveryState.pending and "cannot STOW" in first.last_error
    time.sleep(1.0)
    last = _attempt(settings, report_id)
    assert last.state == DeliveryState.failed and "ConnectError" in last.last_error
