"""`sgc send`: a C-STORE SCU for trying the node without a PACS.

The sending itself is the node's one C-STORE sender (worker/dimse.py, which SR delivery
uses too: one success set, one TLS setup). Here: finding the files, leaving out what is not
DICOM, and counting what was sent, failed or skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sgc_config.settings import RemoteNode
from worker.dimse import StoreOutcome, TlsClient, file_header, store_files

log = logging.getLogger(__name__)


@dataclass
class SendResult:
    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def collect_files(inputs: Iterable[Path]) -> list[Path]:
    """Files named, and every file under folders named (sorted, hidden files left out)."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(
                p
                for p in sorted(item.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.parts)
            )
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return files


def send_files(
    files: list[Path],
    node: RemoteNode,
    calling_aet: str = "SGC_SEND",
    on_progress: Callable[[Path, str], None] | None = None,
    tls: TlsClient | None = None,
) -> SendResult:
    """Send ``files`` to ``node``; a file that is not DICOM is skipped, not fatal."""
    result = SendResult()
    headers = []
    for path in files:
        header = file_header(path)
        if header is None:
            result.skipped.append((path, "not a DICOM Part 10 file"))
            if on_progress:
                on_progress(path, "skipped")
        else:
            headers.append((path, header))

    def _count(path: Path, outcome: StoreOutcome) -> None:
        if outcome.stored:
            result.sent.append(path)
        else:
            result.failed.append((path, outcome.error or "not stored"))
        if on_progress:
            on_progress(path, "sent" if outcome.stored else "failed")

    store_files(headers, node, calling_aet, tls, on_outcome=_count)
    return result
