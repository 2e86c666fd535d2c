"""DICOM UID validation (PS3.5 section 9): the only gate between received text and a path.

Why so strict: storage paths are built from Study, Series and SOP Instance UIDs. A value that
is not a well-formed UID (``..``, ``/``, spaces, 65 characters) could escape the storage root
or collide, so it is rejected before any path is formed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from pydicom import valuerep as pydicom_valuerep
from pynetdicom import _config as pynetdicom_config

# Components are digits without a leading zero (except "0" itself), joined by single dots.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class InvalidUID(ValueError):
    """A value that is not a valid DICOM UID; carries the attribute keyword for the status."""

    def __init__(self, keyword: str, value: object) -> None:
        self.keyword = keyword
        shown = repr(value) if value is None or len(str(value)) <= 80 else repr(str(value)[:80])
        super().__init__(f"{keyword} {shown} is not a valid DICOM UID")


def is_valid_uid(value: object) -> bool:
    """True when ``value`` is a string of at most 64 characters in UID syntax."""
    return isinstance(value, str) and 0 < len(value) <= 64 and _UID_RE.match(value) is not None


def require_uid(keyword: str, value: object) -> str:
    """Return ``value`` as a UID string or raise :class:`InvalidUID` naming ``keyword``."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not isinstance(text, str):
        raise InvalidUID(keyword, value)
    text = text.rstrip("\x00 ")  # UI values are padded to even length with NUL
    if not is_valid_uid(text):
        raise InvalidUID(keyword, value)
    return text


def _memoized(check: Callable[..., tuple[bool, str]]) -> Callable[..., tuple[bool, str]]:
    """``check`` with its results kept for the last few thousand distinct arguments."""
    cached = functools.lru_cache(maxsize=4096)(check)

    def memoized(*args: Any) -> tuple[bool, str]:
        try:
            return cached(*args)
        except TypeError:  # an unhashable value: check it afresh
            return check(*args)

    memoized.__wrapped__ = check  # type: ignore[attr-defined]
    return memoized


def memoize_library_uid_checks() -> None:
    """Remember pydicom's and pynetdicom's UID validity checks (process-wide, idempotent).

    Why: every association's A-ASSOCIATE-RQ names each proposed SOP class and transfer
    syntax (about 500 UIDs from ``storescu``), and pynetdicom turns each into a pydicom
    ``UID``, which matches it against a regular expression, twice; it was a tenth of the
    SCP's Python time at 8 associations. The values repeat from one association to the
    next and the checks are pure functions of them, so their results are kept. pynetdicom
    documents ``_config.VALIDATORS`` for replacing its checks; pydicom's per-VR table is
    the one its ``validate_value`` reads. The node's own gate (:func:`require_uid`) is
    not touched.
    """
    for table in (pydicom_valuerep.VALIDATORS, pynetdicom_config.VALIDATORS):
        if not hasattr(table["UI"], "__wrapped__"):
            table["UI"] = _memoized(table["UI"])
