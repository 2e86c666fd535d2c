"""The C-STORE statuses the node answers, each for one cause (PS3.4 B.2.3, PS3.7 C).

Why named constants: SCUs and operators act on the status; each failure family means
something different to a sender (retry later, fix the data, stop sending), so every cause
maps to exactly one code, and each code carries an ErrorComment saying which cause it was.
"""

from __future__ import annotations

SUCCESS = 0x0000
# Refused, Out of Resources (A7xx): retry later; storage is full or cannot be written.
OUT_OF_RESOURCES = 0xA700
# Error, Data Set does not match SOP Class (A9xx): the dataset's SOP Class UID differs from
# the presentation context (and the command's Affected SOP Class UID) it was sent under.
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
# Error, Cannot understand (Cxxx), with our sub-codes:
CANNOT_UNDERSTAND_UNDECODABLE = 0xC210  # truncated or malformed encoding
CANNOT_UNDERSTAND_MISSING_UID = 0xC220  # a required UID attribute is absent or empty
CANNOT_UNDERSTAND_INVALID_UID = 0xC221  # a UID attribute is not a valid DICOM UID
CANNOT_UNDERSTAND_INSTANCE_MISMATCH = 0xC222  # dataset SOP Instance UID != command's
# General status (PS3.7 C.4.5): the node could not record the instance (database down).
PROCESSING_FAILURE = 0x0110
# General status: the SOP class is not one we accept (should not pass negotiation).
SOP_CLASS_NOT_SUPPORTED = 0x0122
