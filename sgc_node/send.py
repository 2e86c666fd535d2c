"""`sgc send`: a C-STORE SCU for trying the node without a PACS.

One association carries all files (new associations only when the peer aborts); files are
streamed from disk as they are (pynetdicom reads the encoded dataset, no decode/re-encode),
with presentation contexts proposed for exactly the SOP classes and transfer syntaxes found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sgc_config.settings import RemoteNode

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # PS3.8: at most 128 presentation contexts per association


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


def _header(path: Path) -> tuple[str, str] | None:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        return str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
    except (InvalidDicomError, AttributeError, OSError, ValueError):
        return None


def send_files(
    files: list[Path],
    node: RemoteNode,
    calling_aet: str = "SGC_SEND",
    on_progress: Callable[[Path, str], None] | None = None,
) -> SendResult:
    """Send ``files`` to ``node``; a file that is not DICOM is skipped, not fatal."""
    from pynetdicom import AE

    result = SendResult()
    headers: dict[Path, tuple[str, str]] = {}
    for path in files:
        header = _header(path)
        if header is None:
            result.skipped.append((path, "not a DICOM Part 10 file"))
            if on_progress:
                on_progress(path, "skipped")
        else:
            headers[path] = header
    contexts = sorted(set(headers.values()))
    if len({c for c, _ in contexts}) > MAX_CONTEXTS:
        raise ValueError(f"more than {MAX_CONTEXTS} SOP classes in one send; split the input")

    ae = AE(ae_title=calling_aet)
    for sop_class, syntax in contexts[:MAX_CONTEXTS]:
        ae.add_requested_context(sop_class, [syntax])
    pending = list(headers)
    assoc = None
    try:
        while pending:
            if assoc is None or not assoc.is_established:
                assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
                if not assoc.is_established:
                    reason = "rejected" if assoc.is_rejected else "aborted or unreachable"
                    for path in pending:
                        result.failed.append((path, f"association {reason}"))
                    break
            path = pending.pop(0)
            try:
                status = assoc.send_c_store(path)
            except ValueError:  # the peer accepted no context for this class + syntax
                sop_class, syntax = headers[path]
                result.failed.append((path, f"peer accepts no context for {sop_class} in {syntax}"))
                if on_progress:
                    on_progress(path, "failed")
                continue
            code = getattr(status, "Status", None)
            if code is None:
                result.failed.append((path, "no response (association lost)"))
                outcome = "failed"
            elif code in (0x0000, 0xB000, 0xB006, 0xB007):
                result.sent.append(path)
                outcome = "sent"
            else:
                result.failed.append((path, f"status 0x{code:04X}"))
                outcome = "failed"
            if on_progress:
                on_progress(path, outcome)
    finally:
        if assoc is not None and assoc.is_established:
            assoc.release()
    return result
