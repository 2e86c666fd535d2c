"""Digital Mammography X-Ray Image - For Presentation (PS3.3 A.26) datasets for the phantoms.

Every attribute dciodvfy asks of an MG image is set (see docs/synthetic.md): the DX and
Mammography modules' ImageLaterality, ViewCodeSequence, PatientOrientation, ImagerPixelSpacing,
PresentationIntentType, PixelIntensityRelationship(+Sign), PresentationLUTShape (INVERSE for
MONOCHROME1), BreastImplantPresent, OrganExposed and an empty AcquisitionContextSequence.

UIDs are name-based UUIDs of the seed and position (2.25 form), so the same seed writes
byte-identical files.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    ExplicitVRLittleEndian,
)

from sgc_core.synth.styles import HeaderConvention

IMPLEMENTATION_CLASS_UID = UID("1.2.826.0.1.3680043.8.498.1")  # pydicom's root + .1
VIEW_CODES = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
}
# PatientOrientation (row direction \ column direction) in the standard hanging: a left
# breast with its chest wall at column 0 points anterior along rows.
PATIENT_ORIENTATION = {
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
}


# A right breast stored as acquired (not mirrored into the hanging): its chest wall is on the
# left, so the row direction points anterior; the column direction is unchanged.
AS_ACQUIRED_RIGHT = {"CC": ["A", "L"], "MLO": ["A", "FL"]}


def patient_orientation(laterality: str, view: str, hanging: bool) -> list[str]:
    if laterality == "R" and not hanging:
        return AS_ACQUIRED_RIGHT[view]
    return PATIENT_ORIENTATION[(laterality, view)]


def voi_lut_item(center: float, width: float, max_value: int, monochrome1: bool) -> Dataset:
    """A VOI LUT Sequence item: a sigmoid over the window's range (16-bit output), in the
    stored values' terms (for MONOCHROME1 the LUT maps stored values, then the INVERSE
    presentation LUT inverts: the displayed image equals that of MONOCHROME2)."""
    lo = int(max(0, np.floor(center - width)))
    hi = int(min(max_value, np.ceil(center + width)))
    values = np.arange(lo, hi + 1, dtype=np.float64)  # presentation-sense values
    curve = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    curve = (curve - curve[0]) / max(curve[-1] - curve[0], 1e-12)
    if monochrome1:
        first, table = max_value - hi, (1.0 - curve)[::-1]
    else:
        first, table = lo, curve
    item = Dataset()
    item.LUTDescriptor = [len(table) % 65536, first, 16]
    item.LUTExplanation = "breast tissue (sigmoid)"
    item.add_new(0x00283006, "OW", np.rint(table * 65535).astype("<u2").tobytes())
    return item


@dataclass(frozen=True)
class StudyHeader:
    """What the four images of a study share."""

    patient_id: str
    patient_name: str
    birth_date: str
    age_years: int
    study_uid: str
    series_uid: str
    study_date: str
    accession: str


_UID_NAMESPACE = uuid.UUID("5f1fed56-0000-4000-8000-000000005359")


def uid_for(*parts: object) -> str:
    """A deterministic UID from the seed and the object's place in the data set: a name-based
    (version 5) UUID in the 2.25 form (PS3.5 B.2), so the same seed gives the same UIDs."""
    name = "/".join(["sgc-synth", *map(str, parts)])
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}")


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def build_mg_dataset(
    header: StudyHeader,
    sop_uid: str,
    instance_number: int,
    laterality: str,
    view: str,
    pixels: np.ndarray,
    bits_stored: int,
    window_center: float,
    window_width: float,
    pixel_spacing_mm: float,
    monochrome1: bool,
    thickness_mm: float,
    convention: HeaderConvention | None = None,
    response: str = "log",
) -> Dataset:
    """One MG image. ``pixels`` are MONOCHROME2-sense values (bright = dense); with
    ``monochrome1`` they are stored inverted and the window is mirrored so that the display
    (and sgc_core.preprocess) is identical. ``convention`` (a style's; None = the classic
    header) picks the VOI form, the intent, the vendor and how a right breast hangs."""
    convention = convention or HeaderConvention()
    sop_class = (
        DigitalMammographyXRayImageStorageForProcessing
        if convention.intent == "FOR PROCESSING"
        else DigitalMammographyXRayImageStorageForPresentation
    )
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = header.study_date
    _set_patient_study(ds, header)
    _set_series_equipment(ds, header, convention)
    _set_mg_image(ds, instance_number, laterality, view, convention, monochrome1, response)
    _set_acquisition(ds, laterality, view, pixel_spacing_mm, thickness_mm)
    _set_pixels(ds, pixels, bits_stored, monochrome1)
    _set_voi(ds, convention.voi, window_center, window_width, 2**bits_stored - 1, monochrome1)
    return ds


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    """The Part-10 header: explicit little endian, so every reader takes the file as written."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "SGC_SYNTH_1"
    return meta


def _set_patient_study(ds: Dataset, header: StudyHeader) -> None:
    """Patient, General Study and Patient Study modules: what the four views share."""
    ds.PatientName = header.patient_name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = "F"
    ds.PatientAge = f"{header.age_years:03d}Y"
    ds.StudyInstanceUID = header.study_uid
    ds.StudyDate = header.study_date
    ds.StudyTime = "090000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = header.accession[-8:]
    ds.AccessionNumber = header.accession
    ds.StudyDescription = "Synthetic screening mammography (phantom)"


def _set_series_equipment(ds: Dataset, header: StudyHeader, convention: HeaderConvention) -> None:
    """General Series, DX Series, Mammography Series and General Equipment: the style's
    vendor and intent, so a loader sees what that vendor would send."""
    ds.Modality = "MG"
    ds.SeriesInstanceUID = header.series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Synthetic FFDM"
    ds.PresentationIntentType = convention.intent
    ds.Manufacturer = convention.manufacturer
    ds.ManufacturerModelName = convention.model
    ds.SoftwareVersions = "1"
    ds.InstitutionName = "Synthetic"


def _set_mg_image(
    ds: Dataset,
    instance_number: int,
    laterality: str,
    view: str,
    convention: HeaderConvention,
    monochrome1: bool,
    response: str,
) -> None:
    """General Image, DX Image and Mammography Image: laterality, view codes, orientation and
    the intensity relationship that dciodvfy asks of an MG image."""
    ds.InstanceNumber = instance_number
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = "090000"
    ds.AcquisitionDate = ds.StudyDate
    ds.AcquisitionTime = "090000"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PatientOrientation = patient_orientation(laterality, view, convention.hanging)
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.QualityControlImage = "NO"
    ds.PixelIntensityRelationship = "LOG" if response == "log" else "LIN"
    ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.OrganExposed = "BREAST"
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.AnatomicRegionSequence = Sequence([code_item("76752008", "SCT", "Breast")])
    ds.ViewPosition = view
    ds.ViewCodeSequence = Sequence([code_item(VIEW_CODES[view][0], "SCT", VIEW_CODES[view][1])])
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
    ds.AcquisitionContextSequence = Sequence()


def _set_acquisition(
    ds: Dataset, laterality: str, view: str, pixel_spacing_mm: float, thickness_mm: float
) -> None:
    """DX Detector, DX Positioning and X-Ray Acquisition Dose: the spacing preprocessing
    reads, and a plausible geometry for the rest."""
    spacing = [f"{pixel_spacing_mm:.6g}", f"{pixel_spacing_mm:.6g}"]
    ds.DetectorType = "DIRECT"
    ds.DetectorConfiguration = "AREA"
    ds.ImagerPixelSpacing = spacing
    ds.PixelSpacing = list(spacing)
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "phantom geometry"
    ds.EstimatedRadiographicMagnificationFactor = round(660 / 640, 6)
    ds.DistanceSourceToDetector = 660
    ds.DistanceSourceToPatient = 640
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.PositionerPrimaryAngle = 0 if view == "CC" else (45 if laterality == "R" else -45)
    ds.BodyPartThickness = round(thickness_mm, 1)
    ds.CompressionForce = 100
    ds.KVP = 28
    ds.AnodeTargetMaterial = "TUNGSTEN"
    ds.FilterMaterial = "RHODIUM"


def _set_pixels(ds: Dataset, pixels: np.ndarray, bits_stored: int, monochrome1: bool) -> None:
    """Image Pixel module; MONOCHROME1 stores the inverted values so the display is the same."""
    rows, cols = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    max_value = 2**bits_stored - 1
    stored = (max_value - pixels.astype(np.int64)).astype(np.uint16) if monochrome1 else pixels
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()


def _set_voi(
    ds: Dataset, voi: str, center: float, width: float, max_value: int, monochrome1: bool
) -> None:
    """The style's VOI form: a sigmoid LUT, a LINEAR window, or none (a raw detector)."""
    if voi == "lut":
        ds.VOILUTSequence = Sequence([voi_lut_item(center, width, max_value, monochrome1)])
    elif voi == "window":
        # VOI LUT: mirror the LINEAR window for the inverted encoding (sgc_core.preprocess).
        center = (max_value + 1 - center) if monochrome1 else center
        ds.WindowCenter = f"{center:.6g}"
        ds.WindowWidth = f"{width:.6g}"
        # VOILUTFunction is left out: LINEAR is its default (PS3.3 C.11.2.1.3), and OHIF
        # 3.13.2 stops rendering an image that carries it ("Invalid VOI LUT function").
        ds.WindowCenterWidthExplanation = "breast tissue"
