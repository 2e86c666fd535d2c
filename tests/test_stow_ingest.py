"""The STOW-RS door (`sgc web`): stores like the SCP, refuses bad requests whole, stays up."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from db.models import Instance, Job, Study
from tests.helpers.mg import MGSpec, write_mg, write_study
from tests.helpers.nodeproc import count_rows, wait_until
from tests.helpers.stow import files_body, multipart, post, start_web, web_node, web_url

TOKEN = "s3cret-token"
FAILED, REFERENCED, REASON = "00081198", "00081199", "00081197"


@pytest.fixture
def door(tmp_path: Path) -> Iterator:
    node = web_node(tmp_path / "node", web_token=TOKEN, web_max_body_mb=4)
    start_web(node)
    try:
        yield node
    finally:
        node.stop_all()


def _stored_files(node) -> list[Path]:
    """Files in storage outside the temporary folders (those must be empty)."""
    return [p for p in node.storage.rglob("*.dcm") if not p.parent.name.startswith(".")]


def _leftovers(node) -> list[Path]:
    return [p for p in node.storage.rglob("*") if p.is_file() and p.parent.name.startswith(".")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_door_stops_with_status_0_on_sigint_and_sigterm(tmp_path: Path, sig) -> None:
    """Like the SCP: uvicorn re-raised the stop signal after its clean shutdown, so the door
    died of SIGTERM (-15 under `sgc serve`) or printed click's "Aborted!" on Ctrl-C."""
    node = web_node(tmp_path / "node")
    try:
        proc = start_web(node)
        proc.send_signal(sig)
        assert proc.wait(30) == 0, node.logs()
        log = node.log_path("web").read_text()
        assert "STOW-RS door stopped" in log and "Aborted!" not in log, log
    finally:
        node.stop_all()


def test_stow_stores_a_study_like_the_scp_and_it_settles_into_a_job(tmp_path: Path) -> None:
    node = web_node(tmp_path / "node", web_token=TOKEN)
    try:
        node.start_scp()  # its sweeper settles studies whichever door they came through
        start_web(node)
        paths = write_study(tmp_path / "study", n=4)
        paths.append(
            write_mg(
                tmp_path / "j2k.dcm", MGSpec(study_uid=dcmread(paths[0]).StudyInstanceUID, j2k=True)
            )
        )
        study_uid = str(dcmread(paths[0]).StudyInstanceUID)
        body, ctype = files_body(paths)
        rsp = post(f"{web_url(node)}/studies/{study_uid}", body, ctype, TOKEN)
        assert rsp.status_code == 200, rsp.text
        assert rsp.headers["content-type"].startswith("application/dicom+json")
        doc = rsp.json()
        assert FAILED not in doc
        referenced = {i["00081155"]["Value"][0] for i in doc[REFERENCED]["Value"]}
        assert referenced == {str(dcmread(p).SOPInstanceUID) for p in paths}

        sessions = node.sessions()
        with sessions() as s:
            rows = list(s.scalars(select(Instance)))
        assert len(rows) == 5 and {r.calling_aet for r in rows} == {"DICOMWEB"}
        for row in rows:  # the stored file is the sent dataset, behind our File Meta
            stored = dcmread(node.storage / row.path)
            sent = dcmread(
                next(p for p in paths if dcmread(p).SOPInstanceUID == row.sop_instance_uid)
            )
            assert stored.PixelData == sent.PixelData
            assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        wait_until(lambda: count_rows(sessions, Job) == 1, "the study to settle into a job")
        log = node.log_path("web").read_text()
        assert log.count("file new (renamed)") == 5, "each part renamed into place, not copied"
        assert not _leftovers(node)

        # An identical re-send is idempotent: stored again (200), no new revision, no new job.
        again = post(f"{web_url(node)}/studies", body, ctype, TOKEN)
        assert again.status_code == 200
        with sessions() as s:
            study = s.scalars(select(Study)).one()
            assert study.received_rev == study.jobbed_rev == 5
        assert count_rows(sessions, Job) == 1
    finally:
        node.stop_all()


def test_requests_refused_whole_get_a_clear_status_and_store_nothing(door, tmp_path: Path) -> None:
    url = f"{web_url(door)}/studies"
    good = write_mg(tmp_path / "good.dcm", MGSpec()).read_bytes()
    body, ctype = multipart([good])
    cases = [
        ("no token", dict(body=body, content_type=ctype), 401),
        ("wrong token", dict(body=body, content_type=ctype, token="nope"), 401),
        ("wrong content type", dict(body=body, content_type="application/dicom", token=TOKEN), 415),
        (
            "metadata body",
            dict(
                body=body,
                content_type=ctype.replace("application/dicom", "application/dicom+json"),
                token=TOKEN,
            ),
            415,
        ),
        (
            "no boundary",
            dict(
                body=body, content_type='multipart/related; type="application/dicom"', token=TOKEN
            ),
            400,
        ),
        (
            "not multipart",
            dict(body=b"hello, not a multipart body", content_type=ctype, token=TOKEN),
            400,
        ),
        ("cut short", dict(body=body[: len(body) // 2], content_type=ctype, token=TOKEN), 400),
        (
            "no closing boundary",
            dict(body=body[: -len(b"--\r\n")], content_type=ctype, token=TOKEN),
            400,
        ),
        ("oversized", dict(body=b"x" * (5 << 20), content_type=ctype, token=TOKEN), 413),
        (
            "oversized, chunked",
            dict(body=iter([body[:200]] + [b"x" * (1 << 20)] * 5), content_type=ctype, token=TOKEN),
            413,
        ),
    ]
    for what, kwargs, expected in cases:
        rsp = post(url, **kwargs)
        assert rsp.status_code == expected, f"{what}: {rsp.status_code} {rsp.text}"
        assert rsp.text.strip(), f"{what}: the refusal says why"
        if expected == 401:
            assert rsp.headers["www-authenticate"].startswith("Bearer")
    assert count_rows(door.sessions(), Instance) == 0
    assert not _stored_files(door) and not _leftovers(door)
    assert door.procs["web"].poll() is None
    rsp = post(url, body, ctype, TOKEN)  # and the door still stores a good request
    assert rsp.status_code == 200 and count_rows(door.sessions(), Instance) == 1


def test_bad_instances_are_listed_with_their_failure_reason(door, tmp_path: Path) -> None:
    good_spec = MGSpec()
    good = write_mg(tmp_path / "good.dcm", good_spec).read_bytes()
    truncated = write_mg(tmp_path / "cut.dcm", MGSpec()).read_bytes()[:-5000]
    other_study = write_mg(tmp_path / "other.dcm", MGSpec()).read_bytes()
    url = f"{web_url(door)}/studies"

    rsp = post(url, *multipart([truncated, b"not dicom at all"]), TOKEN)
    assert rsp.status_code == 409, rsp.text  # nothing stored
    failed = rsp.json()[FAILED]["Value"]
    assert [f[REASON]["Value"][0] for f in failed] == [0xC210, 0xC210]

    rsp = post(f"{url}/{good_spec.study_uid}", *multipart([good, other_study]), TOKEN)
    assert rsp.status_code == 202, rsp.text  # one stored, one failed
    doc = rsp.json()
    assert [i["00081155"]["Value"][0] for i in doc[REFERENCED]["Value"]] == [
        good_spec.sop_instance_uid
    ]
    assert doc[FAILED]["Value"][0][REASON]["Value"][0] == 0xA900

    rsp = post(f"{url}/1.2.3..4", *multipart([good]), TOKEN)
    assert rsp.status_code == 400

    with door.sessions()() as s:
        assert [r.sop_instance_uid for r in s.scalars(select(Instance))] == [
            good_spec.sop_instance_uid
        ]
    assert len(_stored_files(door)) == 1 and not _leftovers(door)
    assert door.procs["web"].poll() is None


def test_xml_response_when_asked(door, tmp_path: Path) -> None:
    import httpx

    body, ctype = multipart([write_mg(tmp_path / "a.dcm", MGSpec()).read_bytes()])
    rsp = httpx.post(
        f"{web_url(door)}/studies",
        content=body,
        headers={
            "Content-Type": ctype,
            "Accept": "application/dicom+xml",
            "Authorization": f"Bearer {TOKEN}",
        },
    )
    assert rsp.status_code == 200
    assert rsp.headers["content-type"].startswith("application/dicom+xml")
    assert b'keyword="ReferencedSOPSequence"' in rsp.content


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def test_a_60_mb_part_is_streamed_to_disk_not_held_in_memory(tmp_path: Path) -> None:
    """The door's peak memory grows by far less than the part: the body goes to disk."""
    small, big = MGSpec(rows=64, cols=48), MGSpec(rows=5600, cols=5600, seed=1)
    path = write_mg(tmp_path / "big.dcm", big)
    assert path.stat().st_size > 60_000_000
    node = web_node(tmp_path / "node", web_token=TOKEN)
    try:
        proc = start_web(node)
        url = f"{web_url(node)}/studies"
        warm = post(url, *multipart([write_mg(tmp_path / "s.dcm", small).read_bytes()]), TOKEN)
        assert warm.status_code == 200
        before = _peak_rss_kib(proc.pid)
        boundary = "big-part"

        def body():
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            with open(path, "rb") as fp:
                while chunk := fp.read(1 << 20):
                    yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        rsp = post(url, body(), multipart([], boundary)[1], TOKEN)
        assert rsp.status_code == 200, rsp.text
        grown_mib = (_peak_rss_kib(proc.pid) - before) / 1024
        print(f"\nVmHWM grew {grown_mib:.1f} MiB for a {path.stat().st_size / 1e6:.0f} MB part")
        assert grown_mib < 20, f"peak memory grew {grown_mib:.0f} MiB for a 60 MB part"
        with node.sessions()() as s:
            uid = big.sop_instance_uid
            row = s.scalars(select(Instance).where(Instance.sop_instance_uid == uid)).one()
        assert row.size > 60_000_000 and (node.storage / row.path).stat().st_size > row.size
    finally:
        node.stop_all()


def test_unaccepted_class_syntax_and_full_storage_get_their_reasons(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()  # not mammography
    raw = write_mg(tmp_path / "odd.dcm", MGSpec()).read_bytes()
    meta_end = 144 + int.from_bytes(raw[140:144], "little")
    explicit = b"1.2.840.10008.1.2.1\0"  # the File Meta's syntax, padded to even length
    assert raw[:meta_end].count(explicit) == 1
    odd_syntax = raw[:meta_end].replace(explicit, b"1.2.840.10008.1.2.99") + raw[meta_end:]
    good = write_mg(tmp_path / "good.dcm", MGSpec()).read_bytes()
    node = web_node(tmp_path / "node", min_free_mb=10**9)  # the watermark is never met
    try:
        start_web(node)
        parts = [ct, odd_syntax, good]
        rsp = post(f"{web_url(node)}/studies", *multipart(parts))
        assert rsp.status_code == 409, rsp.text
        reasons = [f[REASON]["Value"][0] for f in rsp.json()[FAILED]["Value"]]
        assert reasons == [0x0122, 0xC122, 0xA700]
        assert count_rows(node.sessions(), Instance) == 0 and not _stored_files(node)
        assert not _leftovers(node)
    finally:
        node.stop_all()


def test_too_many_parts_and_a_client_gone_mid_body(door, tmp_path: Path) -> None:
    import socket

    from scp.web.multipart import MAX_PARTS

    body, ctype = multipart([b"x"] * (MAX_PARTS + 1))
    rsp = post(f"{web_url(door)}/studies", body, ctype, TOKEN)
    assert rsp.status_code == 413 and "parts" in rsp.text

    good, ctype = multipart([write_mg(tmp_path / "a.dcm", MGSpec()).read_bytes()])
    head = (
        f"POST /studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(good)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(door.env["SGC_WEB_PORT"]))) as sock:
        sock.sendall(head + good[: len(good) // 2])  # then hang up
    wait_until(
        lambda: "went away mid-body" in door.log_path("web").read_text(), "the door to notice"
    )
    assert "Traceback" not in door.log_path("web").read_text()
    assert count_rows(door.sessions(), Instance) == 0
    assert not _stored_files(door) and not _leftovers(door)
    assert post(f"{web_url(door)}/studies", good, ctype, TOKEN).status_code == 200
