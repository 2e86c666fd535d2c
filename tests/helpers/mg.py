"""A small writer of valid Digital Mammography X-Ray images for tests and benchmarks.

Why: the tests send real DICOM files through real peers (dcmtk, Orthanc, pynetdicom) and the
node must see what a modality sends. Each file carries the modules the MG IOD requires
(dciodvfy reports 0 errors), with synthetic pixels: a smooth breast-like ellipse on a dark
background plus seeded noise, so files differ and compress like images, not like zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"

# View codes (SNOMED CT, CID 4014) and the patient orientation each implies.
_VIEWS = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


@dataclass
class MGSpec:
    """What varies between test images; everything else is fixed and valid."""

    rows: int = 256
    cols: int = 192
    laterality: Literal["L", "R"] = "L"
    view: Literal["CC", "MLO"] = "CC"
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2"
    for_processing: bool = False
    study_uid: str = field(default_factory=generate_uid)
    series_uid: str = field(default_factory=generate_uid)
    sop_instance_uid: str = field(default_factory=generate_uid)
    patient_id: str = "PAT001"
    patient_name: str = "Test^Patient"
    seed: int = 0
    j2k: bool = False
    bits_stored: int = 12


def mg_dataset(spec: MGSpec | None = None) -> Dataset:
    """Build the dataset (with file meta) of one MG image described by ``spec``."""
    s = spec or MGSpec()
    sop_class = MG_FOR_PROCESSING if s.for_processing else MG_FOR_PRESENTATION

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = s.sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = s.sop_instance_uid
    ds.InstanceCreationDate = "20240102"
    ds.InstanceCreationTime = "101500"
    # Patient
    ds.PatientName = s.patient_name
    ds.PatientID = s.patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    # General Study
    ds.StudyInstanceUID = s.study_uid
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = "A0001"
    ds.StudyDescription = "Screening mammography"
    # General Series + Mammography Series
    ds.Modality = "MG"
    ds.SeriesInstanceUID = s.series_uid
    ds.SeriesNumber = 1
    ds.SeriesDate = "20240102"
    ds.SeriesTime = "101500"
    # Frame of Reference is not required for MG; General Equipment / Enhanced MG equipment
    ds.Manufacturer = "sgc-node tests"
    ds.ManufacturerModelName = "synthetic"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "1"
    # General Image
    ds.InstanceNumber = 1
    ds.ContentDate = "20240102"
    ds.ContentTime = "101500"
    ds.AcquisitionDate = "20240102"
    ds.AcquisitionTime = "101500"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Patient orientation: CC -> (A, R|L); MLO -> (A, F) per PS3.3 C.8.11.7.1
    other = "L" if s.laterality == "R" else "R"
    ds.PatientOrientation = ["A", other] if s.view == "CC" else ["A", "F"]
    ds.ImageLaterality = s.laterality
    # DX Anatomy Imaged
    ds.AnatomicRegionSequence = Sequence([_code("76752008", "SCT", "Breast")])
    # DX Image / Mammography Image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = s.photometric
    ds.Rows = s.rows
    ds.Columns = s.cols
    ds.BitsAllocated = 16
    ds.BitsStored = s.bits_stored
    ds.HighBit = s.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if s.photometric == "MONOCHROME1" else "IDENTITY"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationIntentType = "FOR PROCESSING" if s.for_processing else "FOR PRESENTATION"
    ds.AcquisitionContextSequence = Sequence()
    ds.BreastImplantPresent = "NO"
    ds.OrganExposed = "BREAST"
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.PixelSpacing = [0.1, 0.1]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "nominal"
    ds.DetectorType = "DIRECT"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DistanceSourceToDetector = 660.0
    ds.DistanceSourceToPatient = 640.0
    ds.EstimatedRadiographicMagnificationFactor = 660.0 / 640.0
    ds.BodyPartThickness = 50.0
    ds.CompressionForce = 100.0
    ds.KVP = 28.0
    ds.ExposureTime = 1000
    ds.XRayTubeCurrent = 100
    ds.Exposure = 100
    ds.AnodeTargetMaterial = "TUNGSTEN"
    ds.FilterMaterial = ["RHODIUM"]
    ds.FocalSpots = 0.3
    ds.BodyPartExamined = "BREAST"
    code, meaning = _VIEWS[s.view]
    view = _code(code, "SCT", meaning)
    view.ViewModifierCodeSequence = Sequence()
    ds.ViewCodeSequence = Sequence([view])
    ds.QualityControlImage = "NO"
    if not s.for_processing:
        ds.WindowCenter = 1 << (s.bits_stored - 1)
        ds.WindowWidth = 1 << s.bits_stored
        ds.VOILUTFunction = "LINEAR"

    ds.PixelData = _pixels(s).tobytes()
    ds["PixelData"].VR = "OW"
    if s.j2k:
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.LossyImageCompression = "00"
    return ds


def _pixels(s: MGSpec) -> np.ndarray:
    """A breast-like ellipse at the chest wall side with noise; values within BitsStored."""
    rng = np.random.default_rng(s.seed)
    y, x = np.mgrid[0 : s.rows, 0 : s.cols].astype(np.float32)
    cx = 0.0 if s.laterality == "L" else s.cols - 1.0
    r = ((x - cx) / (0.85 * s.cols)) ** 2 + ((y - s.rows / 2) / (0.45 * s.rows)) ** 2
    top = (1 << s.bits_stored) - 1
    tissue = np.clip(1.0 - r, 0.0, 1.0) ** 0.5
    img = 0.1 * top + 0.7 * top * tissue + rng.normal(0, 0.02 * top, size=tissue.shape)
    if s.photometric == "MONOCHROME1":
        img = top - img
    return np.clip(img, 0, top).astype(np.uint16)


def write_mg(path: Path | str, spec: MGSpec | None = None) -> Path:
    """Write one MG image to ``path`` (DICOM Part 10) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mg_dataset(spec).save_as(path, enforce_file_format=True)
    return path


def write_study(
    folder: Path | str,
    n: int = 4,
    study_uid: str | None = None,
    j2k: bool = False,
    rows: int = 256,
    cols: int = 192,
) -> list[Path]:
    """Write a screening-like study (LCC, RCC, LMLO, RMLO, repeated) of ``n`` images."""
    folder = Path(folder)
    study_uid = study_uid or generate_uid()
    series = {lat: generate_uid() for lat in "LR"}
    paths = []
    for i in range(n):
        lat = "LR"[i % 2]
        view = ("CC", "MLO")[(i // 2) % 2]
        spec = MGSpec(
            rows=rows,
            cols=cols,
            laterality=lat,  # type: ignore[arg-type]
            view=view,  # type: ignore[arg-type]
            study_uid=study_uid,
            series_uid=series[lat],
            seed=i,
            j2k=j2k,
        )
        paths.append(write_mg(folder / f"{spec.sop_instance_uid}.dcm", spec))
    return paths
