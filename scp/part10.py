"""DICOM Part 10 framing in one place: the File Meta the node writes, and where a dataset starts.

Why one module: the handler (where does the received dataset start?), the spool file (swap
pynetdicom's File Meta for ours as it arrives) and the storage writer (write our header,
find the dataset of a stored file to hash it) all read or write the same 144-byte prefix.
Each used to parse it on its own; here it is parsed once, with one error type, and neither
the spool file nor the storage writer needs the other to get at it.

Only the layout this node and pynetdicom write is accepted: a 128-byte preamble, ``DICM``,
then the File Meta group starting with its group length (0002,0000) as UL in Explicit VR
Little Endian (PS3.10 7.1), so the dataset starts at 144 + that length.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info

# The node names itself as the files' writer; a UUID-derived UID (PS3.5 B.2) needs no org root.
IMPLEMENTATION_CLASS_UID = "2.25.150092006219739972099628346588340916255"
IMPLEMENTATION_VERSION = "SGC_NODE_0_1"
# Preamble + DICM + the group length element (tag 4, VR 2, length 2, value 4 bytes).
PREFIX_LENGTH = 144
AE_LENGTH = 16  # PS3.5 6.2: an AE title holds at most 16 characters


class NotPart10(ValueError):
    """The bytes do not start with a preamble, ``DICM`` and a File Meta group length."""


def meta_end(head: bytes | bytearray | memoryview) -> int:
    """Offset of the dataset, read from the first :data:`PREFIX_LENGTH` bytes of a file."""
    if (
        len(head) < PREFIX_LENGTH
        or head[128:132] != b"DICM"
        or head[132:136] != b"\x02\x00\x00\x00"
    ):
        raise NotPart10("not a Part 10 file with a File Meta group length")
    return PREFIX_LENGTH + int.from_bytes(head[140:144], "little")


def dataset_offset(path: Path | str) -> int:
    """Byte offset of the dataset in the Part 10 file at ``path`` (see :func:`meta_end`)."""
    with open(path, "rb") as fp:
        return meta_end(fp.read(PREFIX_LENGTH))


def read_meta(header: bytes | bytearray) -> FileMetaDataset:
    """The File Meta of a complete Part 10 header (preamble through the meta group)."""
    return dcmread(BytesIO(bytes(header)), force=True).file_meta


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_aet: str = ""
) -> FileMetaDataset:
    """The File Meta Information written in front of a received dataset (PS3.10 7.1)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if source_aet:
        # Padded to the full 16 characters (trailing spaces are not significant, PS3.5 6.2)
        # so every file meta of an instance has one length whatever the calling AE title:
        # the spool file reserves exactly that much in front of the dataset (scp/spool.py).
        meta.SourceApplicationEntityTitle = source_aet.ljust(AE_LENGTH)
    return meta


def encode_meta(meta: FileMetaDataset) -> bytes:
    """Preamble, ``DICM`` and the File Meta group: everything in front of the dataset."""
    buf = BytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)  # type: ignore[arg-type]
    return buf.getvalue()


def node_meta(theirs: bytes | bytearray, source_aet: str = "") -> bytes:
    """The node's File Meta (preamble to the last File Meta byte) in place of a received one:
    same SOP class, instance and transfer syntax. One function for the spool file
    (scp/spool.py) and the STOW-RS part file (scp/web/partfile.py), which both swap the sender's header for ours as
    the bytes arrive; a broken header raises whatever pydicom raises."""
    meta = read_meta(theirs)
    return encode_meta(
        file_meta(
            str(meta.MediaStorageSOPClassUID),
            str(meta.MediaStorageSOPInstanceUID),
            str(meta.TransferSyntaxUID),
            source_aet,
        )
    )
