"""The STOW-RS endpoint as an ASGI app (Starlette) and its server (uvicorn).

Why this shape: Starlette gives the request body as a stream (``request.stream()``), so a
60 MB part goes to disk chunk by chunk; the blocking work (fsync, database) runs in the
thread pool, so one slow disk does not stall other uploads' reception. Requests the door
refuses whole get one HTTP status that names the cause (401 token, 413 too large, 415 not
multipart/related of application/dicom, 400 malformed or truncated body) and store nothing;
per-instance failures are reported in the PS3.18 response body.
"""

from __future__ import annotations

import hmac
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from scp.storage import Storage
from scp.uids import is_valid_uid
from scp.web.ingest import PartResult, Policy, store_part
from scp.web.multipart import BadRequest, boundary_of, discard, spool_parts
from scp.web.response import choose_type, http_status, render

log = logging.getLogger(__name__)

#: Where part files wait for their checks, inside the storage volume (one rename away).
WEB_SPOOL = ".incoming-web"


@dataclass(frozen=True)
class Door:
    """Everything a request needs: storage, database, what is accepted, the limits."""

    storage: Storage
    sessions: sessionmaker[Session]
    policy: Policy
    token: str | None
    max_body: int

    @property
    def spool(self) -> Path:
        return self.storage.root / WEB_SPOOL

    def prepare(self) -> None:
        """Create the spool folder and empty it: only this door writes there."""
        shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.storage.incoming.mkdir(parents=True, exist_ok=True)


def create_app(door: Door) -> Starlette:
    """The ASGI app: ``POST /studies`` and ``POST /studies/{study}`` (PS3.18 10.5)."""

    async def stow(request: Request) -> Response:
        try:
            _authorize(request, door.token)
            study = request.path_params.get("study")
            if study is not None and not is_valid_uid(study):
                raise BadRequest(400, f"{study[:80]!r} in the URL is not a valid Study UID")
            _check_length(request, door.max_body)
            boundary = boundary_of(request.headers.get("content-type"))
            parts = await spool_parts(request.stream(), boundary, door.spool, door.max_body)
        except BadRequest as exc:
            log.warning("refused STOW-RS request from %s: %d %s", _peer(request), exc.status, exc)
            return _refusal(exc)
        except ClientDisconnect:  # the parts received so far are already deleted
            log.warning("STOW-RS client %s went away mid-body; nothing stored", _peer(request))
            return Response(status_code=400)
        try:
            results: list[PartResult] = []
            for part in parts:
                results.append(
                    await run_in_threadpool(
                        store_part, part, door.storage, door.sessions, door.policy, study
                    )
                )
        finally:
            discard(parts)
        media = choose_type(request.headers.get("accept"))
        status = http_status(results)
        log.info(
            "STOW-RS from %s: %d stored, %d failed",
            _peer(request),
            sum(r.stored for r in results),
            sum(not r.stored for r in results),
        )
        return Response(render(results, media), status_code=status, media_type=media)

    routes = [
        Route("/studies", stow, methods=["POST"]),
        Route("/studies/{study}", stow, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _authorize(request: Request, token: str | None) -> None:
    """Bearer token (RFC 6750) when one is configured; compared in constant time."""
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise BadRequest(401, "a bearer token is required")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise BadRequest(401, "the bearer token is not valid")


def _check_length(request: Request, max_body: int) -> None:
    """Refuse a declared oversized body before reading a byte of it."""
    length = request.headers.get("content-length")
    if length is None:
        return  # chunked: counted while it streams
    if not length.isdigit():
        raise BadRequest(400, "Content-Length is not a number")
    if int(length) > max_body:
        raise BadRequest(413, f"body of {length} bytes is larger than {max_body} bytes")


def _refusal(exc: BadRequest) -> Response:
    headers = {}
    if exc.status == 401:
        error = "invalid_token" if "not valid" in exc.message else "invalid_request"
        headers["WWW-Authenticate"] = f'Bearer realm="sgc-node", error="{error}"'
    if exc.status in (400, 413):
        # The rest of a refused body is not read: the client must not reuse the connection.
        headers["Connection"] = "close"
    return PlainTextResponse(exc.message + "\n", status_code=exc.status, headers=headers)


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"
