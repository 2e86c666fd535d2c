"""The STOW-RS store response (PS3.18 10.5.3): which instances were stored, which failed and why.

Why both encodings: PS3.18 lets the client choose application/dicom+json or
application/dicom+xml with its Accept header; archives differ in which they send. The
response is built once as a pydicom Dataset and written either as DICOM JSON (PS3.18 F.2)
or as the Native DICOM Model (PS3.19 A.1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from xml.etree import ElementTree as ET

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from scp.uids import is_valid_uid
from scp.web.ingest import PartResult

JSON_TYPE = "application/dicom+json"
XML_TYPE = "application/dicom+xml"


def http_status(results: Sequence[PartResult]) -> int:
    """200 all stored; 202 some stored, some failed; 409 none stored (PS3.18 Table 10.5.3-1)."""
    stored = sum(r.stored for r in results)
    if stored == len(results):
        return 200
    return 202 if stored else 409


def response_dataset(results: Sequence[PartResult]) -> Dataset:
    """ReferencedSOPSequence for the stored, FailedSOPSequence (with FailureReason) for the rest."""
    ds = Dataset()
    referenced, failed = [], []
    for result in results:
        item = Dataset()
        # A UID the part got wrong is echoed empty, never as the bytes it sent.
        item.ReferencedSOPClassUID = _uid(result.sop_class_uid)
        item.ReferencedSOPInstanceUID = _uid(result.sop_instance_uid)
        if result.stored:
            referenced.append(item)
        else:
            item.FailureReason = result.failure
            failed.append(item)
    if referenced:
        ds.ReferencedSOPSequence = referenced
    if failed:
        ds.FailedSOPSequence = failed
    return ds


def _uid(value: str) -> str:
    return value if is_valid_uid(value) else ""


def choose_type(accept: str | None) -> str:
    """XML when the client asks for it (and not for JSON first); JSON otherwise."""
    for item in (accept or "").split(","):
        media = item.split(";")[0].strip().lower()
        if media in (JSON_TYPE, "application/json"):
            return JSON_TYPE
        if media in (XML_TYPE, "application/xml", "text/xml"):
            return XML_TYPE
    return JSON_TYPE


def render(results: Sequence[PartResult], media_type: str) -> bytes:
    ds = response_dataset(results)
    if media_type == XML_TYPE:
        root = ET.Element(
            "NativeDicomModel", xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM"
        )
        _xml_dataset(root, ds)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return json.dumps(ds.to_json_dict()).encode()


def _xml_dataset(parent: ET.Element, ds: Dataset) -> None:
    for elem in ds:
        attr = ET.SubElement(
            parent,
            "DicomAttribute",
            tag=f"{elem.tag:08X}",
            vr=elem.VR,
            keyword=keyword_for_tag(elem.tag),
        )
        if elem.VR == "SQ":
            for number, item in enumerate(elem.value, 1):
                _xml_dataset(ET.SubElement(attr, "Item", number=str(number)), item)
        elif elem.value not in (None, ""):
            ET.SubElement(attr, "Value", number="1").text = str(elem.value)
