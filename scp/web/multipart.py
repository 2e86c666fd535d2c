"""Streaming a multipart/related STOW-RS body to disk, one temporary file per part.

Why streaming: a mammogram is 20-60 MB and a study several of them; reading the whole body
would cost that much heap per request. python-multipart's parser is fed the request's chunks
as they arrive and calls back with slices of each part, which go straight to a file in the
storage volume's web folder (scp/web/partfile.py: our File Meta in front, dataset hashed).
Nothing is stored until the whole body has arrived intact: a body cut short, a part without
its closing boundary, or one over the size limit leaves no instance behind (the part files
are deleted).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from scp.web.partfile import PartFile

DICOM_TYPE = "application/dicom"
MAX_BOUNDARY = 200
#: Most parts in one request: each becomes a file, so a body of millions of tiny parts must
#: not exhaust the volume's inodes. A study is at most a few hundred instances.
MAX_PARTS = 10_000


class BadRequest(Exception):
    """A request the door refuses whole; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class SpooledPart:
    """One body part on disk (scp/web/partfile.py) and the content type it declared."""

    file: PartFile
    content_type: str

    @property
    def path(self) -> Path:
        return self.file.path


@dataclass
class _State:
    folder: Path
    parts: list[SpooledPart] = field(default_factory=list)
    header_name: bytes = b""
    header_value: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    open_file: PartFile | None = None
    ended: bool = False


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/related; type="application/dicom"`` body, else 415/400.

    PS3.18 8.6.1.2: the root type must be application/dicom for a body of Part 10 files; a
    STOW-RS body of metadata plus bulk data (application/dicom+json) is not accepted here.
    """
    if not content_type:
        raise BadRequest(415, "Content-Type is missing; expected multipart/related")
    media, params = parse_options_header(content_type)
    if media.lower() != b"multipart/related":
        raise BadRequest(415, f"Content-Type {media.decode('latin-1')!r} is not multipart/related")
    kind = params.get(b"type", b"").decode("latin-1").strip().lower()
    if kind and kind != DICOM_TYPE:
        raise BadRequest(415, f"multipart/related type {kind!r} is not supported; use {DICOM_TYPE}")
    boundary = params.get(b"boundary", b"")
    # RFC 2046 allows 70 characters; Orthanc's DICOMweb plugin sends 73, so allow some more.
    if not boundary or len(boundary) > MAX_BOUNDARY:
        raise BadRequest(
            400, f"multipart/related without a valid boundary parameter: {content_type[:200]!r}"
        )
    return boundary


async def spool_parts(
    chunks: AsyncIterator[bytes], boundary: bytes, folder: Path, max_bytes: int
) -> list[SpooledPart]:
    """Write every part of the body to its own file under ``folder``; raise BadRequest.

    The caller deletes the files (:func:`discard`) whatever happens after.
    """
    state = _State(folder)
    parser = MultipartParser(boundary, _callbacks(state))
    received = 0
    try:
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > max_bytes:
                    raise BadRequest(413, f"body larger than {max_bytes // (1 << 20)} MiB")
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise BadRequest(400, f"malformed multipart body: {exc}") from None
        finally:
            _close(state)
        if not state.ended:
            raise BadRequest(400, "multipart body ended before its closing boundary (truncated)")
        if not state.parts:
            raise BadRequest(400, "multipart body has no parts")
    except BaseException:
        discard(state.parts)
        raise
    return state.parts


def discard(parts: list[SpooledPart]) -> None:
    """Delete the part files (missing ones are fine)."""
    for part in parts:
        with contextlib.suppress(OSError):
            part.path.unlink()


def _close(state: _State) -> None:
    if state.open_file is not None:
        state.open_file.close()
        state.open_file = None


def _callbacks(state: _State) -> dict:
    """The parser's callbacks: collect a part's headers, then append its data to its file."""

    def on_part_begin() -> None:
        state.headers = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        name = state.header_name.decode("latin-1").strip().lower()
        state.headers[name] = state.header_value.decode("latin-1").strip()
        state.header_name = state.header_value = b""

    def on_headers_finished() -> None:
        if len(state.parts) >= MAX_PARTS:
            raise BadRequest(413, f"more than {MAX_PARTS} parts in one request")
        media, _ = parse_options_header(state.headers.get("content-type", DICOM_TYPE))
        state.open_file = PartFile(state.folder / f"{uuid.uuid4().hex}.part")
        state.parts.append(SpooledPart(state.open_file, media.decode("latin-1").lower()))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state.open_file.write(memoryview(data)[start:end])

    def on_part_end() -> None:
        _close(state)

    def on_end() -> None:
        state.ended = True

    return {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
