"""CBIS-DDSM (Curated Breast Imaging Subset of DDSM, TCIA) in its official layout.

Labels come from the four case-description CSVs (mass/calc x train/test); each row is one
abnormality with ``pathology`` MALIGNANT, BENIGN or BENIGN_WITHOUT_CALLBACK (benign findings
not recalled: benign here). An image with several abnormalities is malignant if any of them is.
The official split is in the image folder names ("Mass-Training_P_00001_LEFT_CC" vs
"Mass-Test_..."); a seeded fraction of the training *patients* can be moved to validation.

The official split is per abnormality type, not per patient: a patient can have, say, a mass
in the training set and a calcification in the test set (often the same breast, sometimes the
same image). Such a patient goes **wholly to test** (:func:`patient_splits`): the model never
trains or calibrates on a woman it is then tested on, and the test set keeps every image the
official split puts there. The cost is a few training images; ``official_split`` in each
item's metadata still says where CBIS-DDSM put it.

The CSVs' ``image file path`` names ``<case>/<study uid>/<series uid>/000000.dcm``, but the
TCIA download stores the same image as ``<case>/<date-study>/<series>/1-1.dcm``. The path is
taken literally when it exists, otherwise the single DICOM file under the case folder is used
(the full mammogram is alone there: crops and ROI masks live in ``<case>_<n>`` folders).
"""

from __future__ import annotations

from pathlib import Path

from sgc_core.datasets.mammo import (
    CLASS_NAMES,
    DatasetLayoutError,
    MammoDataset,
    MammoItem,
    carve_validation,
    check_missing_policy,
    raise_if_missing,
    read_csv_rows,
)
from sgc_core.preprocess import PreprocessConfig

DESCRIPTION_CSVS = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calc", "train"): "calc_case_description_train_set.csv",
    ("calc", "test"): "calc_case_description_test_set.csv",
}
PATHOLOGY_CLASS = {
    "MALIGNANT": "malignant",
    "BENIGN": "benign",
    "BENIGN_WITHOUT_CALLBACK": "benign",
}
REQUIRED = ["patient_id", "left or right breast", "image view", "pathology", "image file path"]


def split_from_path(image_path: str) -> str:
    """ "Mass-Training_P_..." -> train, "Calc-Test_P_..." -> test (the official split)."""
    case = image_path.replace("\\", "/").split("/", 1)[0]
    if "-Training_" in case:
        return "train"
    if "-Test_" in case:
        return "test"
    raise DatasetLayoutError(f"cannot tell the official split from the image path {image_path!r}")


def patient_splits(official: dict[str, str], patients: dict[str, str]) -> dict[str, str]:
    """{patient: "train" | "test"} from each image's official split ({image: split}) and its
    patient ({image: patient}): a patient with any official test image is a test patient."""
    split: dict[str, str] = {}
    for image, part in official.items():
        patient = patients[image]
        split[patient] = "test" if part == "test" or split.get(patient) == "test" else "train"
    return split


def _find_csv(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / "csv" / name, root / "CBIS-DDSM" / name):
        if candidate.is_file():
            return candidate
    return None


def _resolve_image(root: Path, image_path: str) -> Path | None:
    rel = Path(image_path.strip().replace("\\", "/"))
    for base in (root, root / "CBIS-DDSM"):
        if (base / rel).is_file():
            return base / rel
        case = base / rel.parts[0]
        if case.is_dir():
            found = sorted(case.rglob("*.dcm"))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise DatasetLayoutError(
                    f"{case}: {len(found)} DICOM files where the full mammogram should be alone"
                )
    return None


def load_cbis_ddsm(
    root: str | Path,
    preprocess: PreprocessConfig | None = None,
    abnormality: tuple[str, ...] = ("mass", "calc"),
    val_fraction: float = 0.1,
    seed: int = 0,
    missing: str = "error",
) -> MammoDataset:
    """All full-field images named by the description CSVs under ``root``."""
    check_missing_policy(missing)
    root = Path(root)
    images = _read_descriptions(root, abnormality)
    by_patient = patient_splits(
        {k: e["split"] for k, e in images.items()}, {k: e["patient_id"] for k, e in images.items()}
    )
    splits = carve_validation(by_patient, val_fraction, seed)
    items, absent = [], []
    for key, entry in sorted(images.items()):
        path = _resolve_image(root, key)
        if path is None:
            absent.append(key)
            continue
        # test for every image of a test patient
        items.append(_item(path, entry, splits[entry["patient_id"]]))
    if missing == "error":
        raise_if_missing(f"CBIS-DDSM at {root}", absent, len(images))
    return MammoDataset(items, preprocess, name="CBIS-DDSM")


def _read_descriptions(root: Path, abnormality: tuple[str, ...]) -> dict[str, dict]:
    """{image file path: its patient, official split, side, view, density and every
    abnormality's pathology and type}, from the description CSVs found under ``root``; an
    image named by several rows (several abnormalities) gathers them all."""
    images: dict[str, dict] = {}
    read_any = False
    for kind in abnormality:
        if kind not in ("mass", "calc"):
            raise ValueError(f"abnormality must be 'mass' and/or 'calc', not {kind!r}")
        for part in ("train", "test"):
            csv_path = _find_csv(root, DESCRIPTION_CSVS[(kind, part)])
            if csv_path is None:
                continue
            read_any = True
            for row in read_csv_rows(csv_path, REQUIRED):
                _add_row(images, row, kind, csv_path)
    if not read_any:
        names = ", ".join(DESCRIPTION_CSVS[(k, p)] for k in abnormality for p in ("train", "test"))
        raise DatasetLayoutError(f"{root}: none of the CBIS-DDSM description CSVs ({names}) found")
    return images


def _add_row(images: dict[str, dict], row: dict, kind: str, csv_path: Path) -> None:
    """Add one abnormality row to its image's entry; an unknown pathology is an error, not a
    silent benign."""
    pathology = row["pathology"].upper()
    if pathology not in PATHOLOGY_CLASS:
        raise DatasetLayoutError(
            f"{csv_path}: pathology {row['pathology']!r} is not one of {sorted(PATHOLOGY_CLASS)}"
        )
    key = row["image file path"].replace("\\", "/").strip()
    entry = images.setdefault(
        key,
        {
            "patient_id": row["patient_id"],
            "split": split_from_path(key),
            "laterality": row["left or right breast"][:1].upper(),
            "view": row["image view"].upper(),
            "density": row.get("breast_density") or row.get("breast density", ""),
            "pathologies": [],
            "abnormality_types": [],
        },
    )
    entry["pathologies"].append(pathology)
    entry["abnormality_types"].append(kind)


def _item(path: Path, entry: dict, split: str) -> MammoItem:
    """One image: malignant if any of its abnormalities is."""
    worst = "malignant" if "MALIGNANT" in entry["pathologies"] else "benign"
    meta = {
        "laterality": entry["laterality"],
        "view": entry["view"],
        "density": entry["density"],
        "pathology": ",".join(entry["pathologies"]),
        "abnormality": ",".join(sorted(set(entry["abnormality_types"]))),
        "official_split": entry["split"],
    }
    return MammoItem(path, CLASS_NAMES.index(worst), split, entry["patient_id"], meta)
