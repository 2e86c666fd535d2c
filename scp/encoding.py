"""Checks that a received dataset's encoding is complete, without decoding its values.

Why: pydicom reads lazily and stops before pixel data, so a dataset cut off in the middle of
its 20-60 MB pixel data (a dropped sender, a broken proxy) parses fine and would be stored
and acknowledged. Walking the element headers (PS3.5 section 7) and seeking over the values
proves every length fits, every sequence and fragment list is closed, and the data ends
exactly at the end of the file, while reading only a few kilobytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian


class MalformedDataset(ValueError):
    """The dataset bytes are not a complete, well-formed encoding."""


_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split()
)
# VRs whose explicit encoding has two reserved bytes and a 32-bit length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xE000, 0xE00D, 0xE0DD
_PIXEL_DATA = (0x7FE0, 0x0010)


def check_encoding(path: Path, offset: int, transfer_syntax: str) -> None:
    """Raise :class:`MalformedDataset` unless the dataset at ``path[offset:]`` is complete.

    Handles implicit and explicit VR little endian, deflate (inflated in memory; such
    datasets are small in practice) and every encapsulated syntax (fragments walked).
    """
    with open(path, "rb") as fp:
        fp.seek(0, io.SEEK_END)
        end = fp.tell()
        fp.seek(offset)
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            data = _inflate(fp)
            _walk_dataset(io.BytesIO(data), len(data), implicit=False, nested=False)
        else:
            _walk_dataset(fp, end, transfer_syntax == ImplicitVRLittleEndian, nested=False)


def _inflate(fp: BinaryIO) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    try:
        while chunk := fp.read(1 << 20):
            out += inflater.decompress(chunk)
    except zlib.error as exc:
        raise MalformedDataset(f"deflated dataset is corrupt: {exc}") from None
    if not inflater.eof:
        raise MalformedDataset("deflated dataset is truncated (stream has no end)")
    return bytes(out)


def _read(fp: BinaryIO, n: int, end: int) -> bytes:
    pos = fp.tell()
    if pos + n > end:
        raise MalformedDataset(f"dataset is truncated at byte {pos} (needs {n} more bytes)")
    return fp.read(n)


def _skip(fp: BinaryIO, length: int, end: int, what: str) -> None:
    pos = fp.tell()
    if pos + length > end:
        raise MalformedDataset(
            f"dataset is truncated: {what} at byte {pos} claims {length} bytes, {end - pos} remain"
        )
    fp.seek(length, io.SEEK_CUR)


def _walk_dataset(fp: BinaryIO, end: int, implicit: bool, nested: bool) -> None:
    """Walk elements to ``end`` (top level) or to an item delimiter (``nested``)."""
    last = (-1, -1)
    while True:
        pos = fp.tell()
        if pos == end:
            if nested:
                raise MalformedDataset("dataset is truncated inside a sequence item")
            return
        header = _read(fp, 8, end)
        group, element = struct.unpack("<HH", header[:4])
        if group == 0xFFFE:
            if nested and element == _ITEM_END:
                return
            raise MalformedDataset(f"unexpected delimiter (FFFE,{element:04X}) at byte {pos}")
        tag = (group, element)
        if tag <= last:
            raise MalformedDataset(
                f"element ({group:04X},{element:04X}) at byte {pos} is out of order"
            )
        last = tag
        vr: bytes | None = None
        if implicit:
            (length,) = struct.unpack("<I", header[4:])
        else:
            vr = header[4:6]
            if vr not in _VRS:
                raise MalformedDataset(
                    f"element ({group:04X},{element:04X}) at byte {pos} has an invalid VR {vr!r}"
                )
            if vr in _LONG_VRS:
                (length,) = struct.unpack("<I", _read(fp, 4, end))
            else:
                (length,) = struct.unpack("<H", header[6:])
        if length != _UNDEFINED:
            _skip(fp, length, end, f"element ({group:04X},{element:04X})")
        elif tag == _PIXEL_DATA and not implicit:
            _walk_fragments(fp, end)
        elif vr == b"UN":  # undefined-length UN holds an implicit VR sequence (PS3.5 6.2.2)
            _walk_sequence(fp, end, implicit=True)
        elif vr in (b"SQ", None):
            _walk_sequence(fp, end, implicit)
        else:
            raise MalformedDataset(
                f"element ({group:04X},{element:04X}) with VR {vr!r} has an undefined length"
            )


def _item_header(fp: BinaryIO, end: int) -> tuple[int, int, int]:
    pos = fp.tell()
    group, element, length = struct.unpack("<HHI", _read(fp, 8, end))
    if group != 0xFFFE or element not in (_ITEM, _SEQ_END):
        raise MalformedDataset(
            f"expected an item or sequence delimiter at byte {pos}, "
            f"found ({group:04X},{element:04X})"
        )
    return element, length, pos


def _walk_sequence(fp: BinaryIO, end: int, implicit: bool) -> None:
    while True:
        element, length, _ = _item_header(fp, end)
        if element == _SEQ_END:
            return
        if length == _UNDEFINED:
            _walk_dataset(fp, end, implicit, nested=True)
        else:
            _skip(fp, length, end, "sequence item")


def _walk_fragments(fp: BinaryIO, end: int) -> None:
    while True:
        element, length, pos = _item_header(fp, end)
        if element == _SEQ_END:
            return
        if length == _UNDEFINED:
            raise MalformedDataset(f"pixel data fragment at byte {pos} has an undefined length")
        _skip(fp, length, end, "pixel data fragment")
