"""Mutations of a valid mammogram's encoded dataset, as hypothesis strategies.

Why structure-aware as well as blind: flipping random bytes of a 100 KB image mostly hits
pixel data, which the SCP never parses. Most draws therefore aim at the element headers
(tag, VR, length) and the values of the attributes the node reads (UIDs, the character set,
sequences), found by walking the valid encoding once; the rest are blind flips, cuts,
insertions and splices anywhere.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st

_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}


@dataclass(frozen=True)
class Element:
    """Where one top-level or nested element of the explicit VR encoding lies."""

    start: int  # first byte of the tag
    header: int  # bytes of tag + VR + length
    length: int  # value length as encoded (0xFFFFFFFF: undefined)
    tag: tuple[int, int]


def elements(data: bytes) -> list[Element]:
    """Element headers of an explicit VR little endian dataset, sequences entered."""
    out: list[Element] = []
    pos = 0
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group == 0xFFFE:  # item / delimiters: 8 bytes, step into the item
            out.append(Element(pos, 8, struct.unpack_from("<I", data, pos + 4)[0], (group, elem)))
            pos += 8
            continue
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            header = 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            header = 8
        out.append(Element(pos, header, length, (group, elem)))
        if vr == b"SQ" or length == 0xFFFFFFFF:
            pos += header  # walk into the sequence's items
        else:
            pos += header + length
    return out


INTERESTING_32 = [0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]
INTERESTING_VALUES = [
    b"", b"\x00", b"..", b"../../../../tmp/sgc-fuzz", b"/tmp/sgc-fuzz", b"1.2.3\\4.5", b"\xff\xfe",
    b"ISO_IR 192", b"ISO 2022 IR 87", b"\x1b$B", b"1." + b"9" * 120, b"0.0", b"1.02",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """Draw one mutation of ``data``; returns (bytes, a short description)."""
    elems = elements(data)
    steps = draw(st.integers(1, 3))
    out = bytearray(data)
    notes = []
    for _ in range(steps):
        kind = draw(
            st.sampled_from(
                ["length", "vr", "tag", "value", "flip", "cut", "insert", "delete", "splice"]
            )
        )
        live = [e for e in elems if e.start + e.header <= len(out)]
        if kind in ("length", "vr", "tag", "value") and live:
            e = draw(st.sampled_from(live))
            if kind == "length":
                value = draw(st.sampled_from(INTERESTING_32) | st.integers(0, 2**32 - 1))
                if e.tag[0] == 0xFFFE:  # item header: the 32-bit length follows the tag
                    out[e.start + 4 : e.start + 8] = struct.pack("<I", value)
                elif e.header == 12:
                    out[e.start + 8 : e.start + 12] = struct.pack("<I", value)
                else:
                    out[e.start + 6 : e.start + 8] = struct.pack("<H", value & 0xFFFF)
            elif kind == "vr" and e.tag[0] != 0xFFFE:
                out[e.start + 4 : e.start + 6] = draw(
                    st.sampled_from([b"SQ", b"OB", b"UN", b"UI", b"XX", b"\x00\x00"])
                )
            elif kind == "tag":
                out[e.start : e.start + 4] = struct.pack(
                    "<HH", draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))
                )
            else:
                start = e.start + e.header
                end = min(len(out), start + (e.length if e.length != 0xFFFFFFFF else 0))
                value = draw(st.sampled_from(INTERESTING_VALUES) | st.binary(max_size=80))
                if len(value) % 2:
                    value += b"\x00"
                out[start:end] = value
                # keep the length field honest half of the time, lie the other half
                if draw(st.booleans()) and e.header == 8 and e.tag[0] != 0xFFFE:
                    out[e.start + 6 : e.start + 8] = struct.pack("<H", len(value) & 0xFFFF)
            notes.append(f"{kind}@{e.tag[0]:04X},{e.tag[1]:04X}")
        elif kind == "flip" and out:
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
            notes.append(f"flip@{i}")
        elif kind == "cut" and out:
            i = draw(st.integers(0, len(out)))
            del out[i:]
            notes.append(f"cut@{i}")
        elif kind == "insert":
            i = draw(st.integers(0, len(out)))
            out[i:i] = draw(st.binary(min_size=1, max_size=64))
            notes.append(f"insert@{i}")
        elif kind == "delete" and out:
            i = draw(st.integers(0, len(out) - 1))
            n = draw(st.integers(1, 64))
            del out[i : i + n]
            notes.append(f"delete@{i}+{n}")
        elif kind == "splice" and len(out) > 16:
            i, j = sorted((draw(st.integers(0, len(out))), draw(st.integers(0, len(out)))))
            out[i:i] = out[i:j][:4096]
            notes.append(f"splice@{i}:{j}")
    return bytes(out), " ".join(notes)
