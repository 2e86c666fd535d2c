"""DICOM UID validation (PS3.5 section 9): the only gate between received text and a path.

Why so strict: storage paths are built from Study, Series and SOP Instance UIDs. A value that
is not a well-formed UID (``..``, ``/``, spaces, 65 characters) could escape the storage root
or collide, so it is rejected before any path is formed.
"""

from __future__ import annotations

import re

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
