"""SR delivery by STOW-RS (PS3.18 10.5): one report, one multipart/related POST.

Why it answers a :class:`~worker.dimse.StoreOutcome`: the outbox (worker/deliver.py) keeps
one set of retries, backoff and final states for every destination, so a DICOMweb archive's
answer is mapped onto the C-STORE vocabulary: 200, or 202 with the instance referenced, is
stored (0x0000 / 0xB000 warning); any other answer is a failure carrying the archive's
FailureReason when it gave one, retried like a refused C-STORE. The file is streamed from
disk with its length declared up front (some servers refuse chunked uploads).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from sgc_config.settings import DicomWebNode
from worker.dimse import DIMSE_TIMEOUT, StoreOutcome, TlsClient

_CHUNK = 1 << 20
_TIMEOUT = httpx.Timeout(DIMSE_TIMEOUT, connect=30.0)
_FAILED, _REFERENCED, _REASON, _INSTANCE = "00081198", "00081199", "00081197", "00081155"
#: Stored, but the archive reported a warning (PS3.18 202 for a single instance).
WARNING_STATUS = 0xB000


def stow_file(
    path: Path, node: DicomWebNode, token: str | None = None, tls: TlsClient | None = None
) -> StoreOutcome:
    """POST the Part 10 file at ``path`` to ``{node}/studies``; never raises for the network."""
    from pydicom import dcmread

    instance = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    boundary = uuid.uuid4().hex
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Content-Length": str(len(head) + path.stat().st_size + len(tail)),
        "Accept": "application/dicom+json",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{node.base_url}/studies"
    try:
        with httpx.Client(verify=tls.context() if tls else True, timeout=_TIMEOUT) as client:
            rsp = client.post(url, content=_body(path, head, tail), headers=headers)
    except httpx.HTTPError as exc:
        return StoreOutcome(None, f"cannot STOW to {node}: {type(exc).__name__}: {exc}")
    return _outcome(rsp, node, instance)


def _body(path: Path, head: bytes, tail: bytes) -> Iterator[bytes]:
    yield head
    with open(path, "rb") as fp:
        while chunk := fp.read(_CHUNK):
            yield chunk
    yield tail


def _outcome(rsp: httpx.Response, node: DicomWebNode, instance: str) -> StoreOutcome:
    doc = _json(rsp)
    referenced = _instances(doc, _REFERENCED)
    failed = {i.get(_INSTANCE, {}).get("Value", [""])[0]: i for i in _items(doc, _FAILED)}
    if rsp.status_code == 200 or (rsp.status_code == 202 and instance in referenced):
        return StoreOutcome(0x0000 if rsp.status_code == 200 else WARNING_STATUS)
    reason = failed.get(instance, {}).get(_REASON, {}).get("Value", [None])[0]
    detail = f", FailureReason 0x{reason:04X}" if isinstance(reason, int) else ""
    text = "" if doc is not None else rsp.text.strip()[:200]
    return StoreOutcome(
        reason if isinstance(reason, int) else None,
        f"{node} answered STOW-RS HTTP {rsp.status_code}{detail}{': ' + text if text else ''}",
    )


def _json(rsp: httpx.Response) -> dict | None:
    if "json" not in rsp.headers.get("content-type", ""):
        return None
    try:
        doc = rsp.json()
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _items(doc: dict | None, tag: str) -> list[dict]:
    if not doc:
        return []
    items = doc.get(tag, {}).get("Value", [])
    return [i for i in items if isinstance(i, dict)]


def _instances(doc: dict | None, tag: str) -> set[str]:
    return {str(i.get(_INSTANCE, {}).get("Value", [""])[0]) for i in _items(doc, tag)}
