"""The coded concepts every report form of the node uses (PS3.16 / SNOMED CT unless noted).

Why one table: the TID 1500 SR, the segmentation and the Mammography CAD SR name the same
things (malignant, left breast, the algorithm); one definition keeps them saying the same.

- Procedure reported: (71651007, SCT, "Mammography").
- Per view: (111047, DCM, "Probability of cancer") in UCUM "%"; (121071, DCM, "Finding") =
  (21594007, SCT, "Malignant") when the probability reaches the model's operating point, else
  (30807003, SCT, "Benign"); finding site (76752008, SCT, "Breast") with laterality
  (7771000, SCT, "Left") / (24028007, SCT, "Right").
- Out-of-distribution flag: no standard code says "this input is outside what the model was
  trained on", so the node uses a private scheme declared in the Coding Scheme Identification
  Sequence: (OOD, 99SGC, "Input outside model training distribution") = (373066001, SCT,
  "Yes"). It is present only when raised and tells the reader not to trust that view's value.
- Contributing equipment purpose: (Newcode1, 99IHE, "Processing Algorithm") per IHE AIR.
"""

from __future__ import annotations

import highdicom as hd

MAMMOGRAPHY = hd.sr.CodedConcept("71651007", "SCT", "Mammography")
PROBABILITY_OF_CANCER = hd.sr.CodedConcept("111047", "DCM", "Probability of cancer")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "Percent")
MILLIMETER = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
DIAMETER = hd.sr.CodedConcept("81827009", "SCT", "Diameter")
DISTANCE_FROM_NIPPLE = hd.sr.CodedConcept("121242", "DCM", "Distance from nipple")
FINDING = hd.sr.CodedConcept("121071", "DCM", "Finding")
MALIGNANT = hd.sr.CodedConcept("21594007", "SCT", "Malignant")
BENIGN = hd.sr.CodedConcept("30807003", "SCT", "Benign")
BREAST = hd.sr.CodedConcept("76752008", "SCT", "Breast")
LEFT = hd.sr.CodedConcept("7771000", "SCT", "Left")
RIGHT = hd.sr.CodedConcept("24028007", "SCT", "Right")
BOTH = hd.sr.CodedConcept("51440002", "SCT", "Right and left")
LEFT_BREAST = hd.sr.CodedConcept("80248007", "SCT", "Left breast")
RIGHT_BREAST = hd.sr.CodedConcept("73056007", "SCT", "Right breast")
FINDING_SITE = hd.sr.CodedConcept("363698007", "SCT", "Finding Site")
OOD_FLAG = hd.sr.CodedConcept("OOD", "99SGC", "Input outside model training distribution")
YES = hd.sr.CodedConcept("373066001", "SCT", "Yes")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
IMPRESSION = hd.sr.CodedConcept("121073", "DCM", "Impression")
PROCESSING_ALGORITHM = hd.sr.CodedConcept("Newcode1", "99IHE", "Processing Algorithm")

LATERALITY = {"L": LEFT, "R": RIGHT, "B": BOTH}
BREAST_SIDE = {"L": LEFT_BREAST, "R": RIGHT_BREAST}
SIDE_WORD = {"L": "left", "R": "right", "B": "both", "?": "unknown side"}

#: Private coding schemes a report declares (PS3.3 C.12.1.1.7.1): designator, name, owner.
PRIVATE_SCHEMES = (
    ("99SGC", "sgc-node private codes", "sgc-node"),
    ("99IHE", "IHE private codes", "IHE"),
)
