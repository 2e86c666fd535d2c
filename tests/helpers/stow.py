"""STOW-RS for tests: multipart/related bodies and the `sgc web` door as a real process.

Why a process: the bad-input tests must show the door stays up, and only a real process
(uvicorn, its own interpreter) shows that; the database and storage folder it writes are
read directly by the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx

from tests.helpers.nodeproc import NodeProcesses, port_open, wait_until
from tests.helpers.services import free_port


def multipart(parts: Iterable[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/related body of application/dicom parts."""
    boundary = boundary or uuid.uuid4().hex
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
        for p in parts
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def files_body(paths: Iterable[Path]) -> tuple[bytes, str]:
    return multipart(p.read_bytes() for p in paths)


def web_node(folder: Path, **settings: object) -> NodeProcesses:
    """A node environment with the door on a free loopback port (not started)."""
    settings.setdefault("web_port", free_port())
    settings.setdefault("port", free_port())
    settings.setdefault("stable_age", 0.5)
    settings.setdefault("sweep_interval", 0.1)
    settings.setdefault("min_free_mb", 0)
    return NodeProcesses.create(folder, **settings)


def start_web(node: NodeProcesses, timeout: float = 60.0):
    """Start `sgc web` and wait until it accepts connections."""
    proc = node.start("web", "web")
    port = int(node.env["SGC_WEB_PORT"])
    wait_until(lambda: port_open(port), "the STOW-RS door to listen", timeout, [proc])
    return proc


def web_url(node: NodeProcesses, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{node.env['SGC_WEB_PORT']}"


def post(
    url: str,
    body: bytes | Iterable[bytes],
    content_type: str,
    token: str | None = None,
    **kwargs: object,
) -> httpx.Response:
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, content=body, headers=headers, timeout=60, **kwargs)
