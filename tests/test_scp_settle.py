"""Study settling and the job outbox, with real brokers (filesystem transport and Redis).

A study is complete after ``stable_age`` s without a new instance; then exactly one job per
study revision is committed and its task message, named ``sgc.classify_study``, reaches the
broker. A down broker only delays the message: the sweeper sends it later.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from db.models import Delivery, DeliveryState, Job, JobState, Report, Study, utcnow
from scp.dispatch import Dispatcher, broker_options, make_producer
from scp.sweeper import send_pending_deliveries, send_pending_jobs
from tests.conftest import REDIS_URL, free_port, require_binary
from tests.helpers.mg import MGSpec, mg_dataset, write_mg, write_study
from tests.helpers.scpnode import (
    instances,
    jobs,
    node_settings,
    running_node,
    scu_association,
    send_file,
    study,
    wait_for,
)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def storescu(port: int, files: list[Path]) -> None:
    import subprocess

    cmd = [require_binary("storescu"), "-aec", "SGC_NODE", "127.0.0.1", str(port)]
    subprocess.run(cmd + [str(f) for f in files], check=True, capture_output=True, timeout=60)


def _decode(message: dict) -> tuple[str, list]:
    """(task name, args) of a Celery protocol 2 message as stored by the transport."""
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, _kwargs, _embed = json.loads(body)
    return message["headers"]["task"], args


def _queue_messages(folder: Path, timeout: float = 5.0) -> list[tuple[str, list]]:
    """The task messages in the filesystem queue; kombu writes a .msg file in place (not
    atomically), so a file caught mid-write is read again until it parses."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return [_decode(json.loads(p.read_text())) for p in sorted(folder.glob("*.msg"))]
        except json.JSONDecodeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_settled_study_gets_exactly_one_job_per_revision(tmp_path: Path, database_url: str) -> None:
    files = write_study(tmp_path / "study", n=4)
    study_uid = dcmread(files[0]).StudyInstanceUID
    # 2 s: longer than any gap between two instances of one storescu run on a loaded machine
    settings = node_settings(tmp_path, database_url, stable_age=2.0)
    queue = Path(broker_options(settings)[1]["data_folder_in"])
    with running_node(settings) as node:
        storescu(node.address[1], files)
        first = wait_for(lambda: jobs(node), what="a job")[0]
        assert first.revision == 4 and first.state == JobState.pending
        wait_for(lambda: jobs(node)[0].dispatched_at is not None, what="dispatch")
        time.sleep(5 * settings.sweep_interval + settings.stable_age)  # more passes: no more jobs
        assert len(jobs(node)) == 1
        assert study(node, study_uid).jobbed_rev == 4
        assert _queue_messages(queue) == [("sgc.classify_study", [first.id])]

        storescu(node.address[1], files)  # identical re-send: nothing new to classify
        time.sleep(5 * settings.sweep_interval + settings.stable_age)
        assert len(jobs(node)) == 1

        late = write_mg(tmp_path / "late.dcm", MGSpec(study_uid=study_uid, seed=9))
        storescu(node.address[1], [late])  # a late view: the study is classified again
        second = wait_for(lambda: jobs(node)[1:], what="a second job")[0]
        assert second.revision == 5 and second.study_id == first.study_id
        wait_for(lambda: len(list(queue.glob("*.msg"))) == 2, what="second message")
        assert sorted(_queue_messages(queue)) == sorted(
            [("sgc.classify_study", [first.id]), ("sgc.classify_study", [second.id])]
        )


def test_job_message_reaches_redis(tmp_path: Path, database_url: str) -> None:
    import redis

    broker = f"{REDIS_URL}/11"
    client = redis.Redis.from_url(broker)
    files = write_study(tmp_path / "study", n=2)
    with running_node(node_settings(tmp_path, database_url, broker_url=broker)) as node:
        storescu(node.address[1], files)
        job = wait_for(lambda: [j for j in jobs(node) if j.dispatched_at], what="dispatch")[0]
    raw = [m for m in client.lrange("classify", 0, -1) if _decode(json.loads(m))[1] == [job.id]]
    try:
        assert [_decode(json.loads(m)) for m in raw][:1] == [("sgc.classify_study", [job.id])]
        assert json.loads(raw[0])["properties"]["delivery_info"]["routing_key"] == "classify"
    finally:
        for m in raw:
            client.lrem("classify", 0, m)


def test_broker_down_keeps_job_pending_then_sends_it(tmp_path: Path, database_url: str) -> None:
    files = write_study(tmp_path / "study", n=2)
    down = node_settings(tmp_path, database_url, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with running_node(down) as node:
        storescu(node.address[1], files)
        job = wait_for(lambda: jobs(node), what="a job")[0]
        time.sleep(5 * down.sweep_interval)  # several failed passes
        job = jobs(node)[0]
        assert job.state == JobState.pending and job.dispatched_at is None
    up = node_settings(tmp_path, database_url)  # the broker is back (filesystem transport)
    with running_node(up) as node:
        wait_for(lambda: jobs(node)[0].dispatched_at is not None, what="late dispatch")
        assert jobs(node)[0].dispatch_count == 1 and len(jobs(node)) == 1
    queue = Path(broker_options(up)[1]["data_folder_in"])
    assert _queue_messages(queue) == [("sgc.classify_study", [job.id])]


def test_sweeper_resends_stale_jobs_and_deliveries(tmp_path: Path, database_url: str) -> None:
    """Lost messages: a pending job/delivery past ``resend_after`` is sent again."""
    from db.session import make_engine, make_session_factory

    settings = node_settings(tmp_path, database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    long_ago = utcnow() - timedelta(hours=1)
    with sessions.begin() as s:
        st = Study(study_uid=generate_uid(), received_rev=1, jobbed_rev=1)
        job = Job(study=st, revision=1, dispatched_at=long_ago, dispatch_count=1)
        fresh = Job(study=st, revision=2, dispatched_at=utcnow(), dispatch_count=1)
        done = Job(study=st, revision=3, state=JobState.done, dispatched_at=long_ago)
        # A report of an older job first, so that report ids and delivery ids differ.
        s.add(Report(job=done, sop_instance_uid=generate_uid(), series_uid="1.1", path="o.dcm"))
        s.flush()
        report = Report(job=job, sop_instance_uid=generate_uid(), series_uid="1.2", path="r.dcm")
        lost = Delivery(report=report, destination="PACS@h:1", created_at=long_ago)
        backing_off = Delivery(
            report=report,
            destination="PACS@h:2",
            created_at=long_ago,
            dispatched_at=long_ago,
            next_attempt_at=utcnow() + timedelta(minutes=5),
        )
        sent = Delivery(
            report=report, destination="PACS@h:3", created_at=long_ago, state=DeliveryState.sent
        )
        s.add_all([st, job, fresh, done, report, lost, backing_off, sent])
    dispatcher = Dispatcher(make_producer(settings))
    try:
        assert send_pending_jobs(sessions, dispatcher, resend_after=60) == 1
        assert send_pending_jobs(sessions, dispatcher, resend_after=60) == 0  # now fresh
        assert send_pending_deliveries(sessions, dispatcher, resend_after=60) == 1
        assert send_pending_deliveries(sessions, dispatcher, resend_after=60) == 0
    finally:
        dispatcher.close()
    with sessions() as s:
        assert s.get(Job, job.id).dispatch_count == 2
        assert s.get(Job, fresh.id).dispatch_count == 1
    engine.dispose()
    queue = Path(broker_options(settings)[1]["data_folder_in"])
    assert sorted(_queue_messages(queue)) == [
        ("sgc.classify_study", [job.id]),
        ("sgc.deliver_report", [report.id]),
    ]
    assert lost.id != report.id
    routing = {
        json.loads(p.read_text())["properties"]["delivery_info"]["routing_key"]
        for p in queue.glob("*.msg")
    }
    assert routing == {"classify", "deliver"}


def test_a_job_waiting_in_a_backlog_is_resent_with_backoff(
    tmp_path: Path, database_url: str
) -> None:
    """A pending job is re-sent after 1, 2, 4, then every 8 periods, not every period: a job
    behind a long backlog is still in the queue, and each copy would wait there too."""
    from db.session import make_engine, make_session_factory
    from scp.sweeper import MAX_RESEND_BACKOFF

    settings = node_settings(tmp_path, database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        job = Job(study=Study(study_uid=generate_uid(), received_rev=1, jobbed_rev=1), revision=1)
        s.add(job)
    dispatcher = Dispatcher(make_producer(settings))
    sends_at, t0, period = [], utcnow(), 60.0
    try:
        for minute in range(0, 40):
            now = t0 + timedelta(seconds=minute * period + 1)
            if send_pending_jobs(sessions, dispatcher, resend_after=period, now=now):
                sends_at.append(minute)
                with sessions.begin() as s:  # the send's own timestamp is the wall clock
                    s.get(Job, job.id).dispatched_at = now
    finally:
        dispatcher.close()
        engine.dispose()
    gaps = [b - a for a, b in zip(sends_at, sends_at[1:], strict=False)]
    assert sends_at[0] == 0 and gaps[:3] == [1, 2, 4]
    assert set(gaps[3:]) == {MAX_RESEND_BACKOFF} and len(gaps) >= 6


def test_other_storage_classes_are_stored_but_not_classified(
    tmp_path: Path, database_url: str
) -> None:
    ds = mg_dataset(MGSpec())
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.Modality = "OT"
    path = tmp_path / "sc.dcm"
    ds.save_as(path, enforce_file_format=True)
    settings = node_settings(tmp_path, database_url, accept_other_storage=True)
    with running_node(settings) as node:
        with scu_association(
            node.address[1], [ExplicitVRLittleEndian], sop_classes=(SECONDARY_CAPTURE,)
        ) as assoc:
            assert send_file(assoc, path).Status == 0
        row = instances(node)[0]
        assert not row.classifiable and SECONDARY_CAPTURE in (row.skip_reason or "")
        wait_for(lambda: study(node, ds.StudyInstanceUID).jobbed_rev == 1, what="settling")
        assert jobs(node) == []


def test_other_storage_classes_are_refused_by_default(tmp_path: Path, database_url: str) -> None:
    from pynetdicom import AE

    with running_node(node_settings(tmp_path, database_url), sweeper=False) as node:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(SECONDARY_CAPTURE, [ExplicitVRLittleEndian])
        ae.add_requested_context("1.2.840.10008.1.1")  # Verification, so the association opens
        assoc = ae.associate("127.0.0.1", node.address[1], ae_title="SGC_NODE")
        try:
            assert assoc.is_established
            assert [cx.result for cx in assoc.rejected_contexts] == [0x03]  # SOP class
        finally:
            assoc.release()
