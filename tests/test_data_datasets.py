"""Real data set adapters on tiny fake trees in the official layouts, and the synthetic loader."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import torch

from sgc_core.datasets.cbis import load_cbis_ddsm, patient_splits, split_from_path
from sgc_core.datasets.inbreast import load_inbreast
from sgc_core.datasets.mammo import DatasetLayoutError, load_synthetic, random_patient_split
from sgc_core.datasets.vindr import load_vindr_mammo
from sgc_core.preprocess import PreprocessConfig
from sgc_core.synth import generate_study, write_dataset
from sgc_node.cli.ml import split_seed

PRE = PreprocessConfig(image_size=32, scaling="[0,1]")


@pytest.fixture(scope="module")
def views() -> list[pydicom.Dataset]:
    """Eight small synthetic MG images to lay out as any data set."""
    return generate_study(1) + generate_study(2)


def _save(ds: pydicom.Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


# --- CBIS-DDSM ---------------------------------------------------------------------------------

CBIS_HEADER = [
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]


def _cbis_row(patient, side, view, ab_id, pathology, path, kind="mass"):
    return [
        patient,
        "2",
        side,
        view,
        ab_id,
        kind,
        "OVAL",
        "CIRCUMSCRIBED",
        "3",
        pathology,
        "4",
        path,
        "",
        "",
    ]


def make_cbis(root: Path, views) -> None:
    p1 = "Mass-Training_P_00001_LEFT_CC/1.3.6.1.4.1.9590.1/1.3.6.1.4.1.9590.2/000000.dcm"
    p2 = "Mass-Training_P_00004_RIGHT_MLO/1.3.6.1.4.1.9590.3/1.3.6.1.4.1.9590.4/000000.dcm"
    p3 = "Mass-Test_P_00016_LEFT_MLO/1.3.6.1.4.1.9590.5/1.3.6.1.4.1.9590.6/000000.dcm"
    p4 = "Calc-Training_P_00005_RIGHT_CC/1.3.6.1.4.1.9590.7/1.3.6.1.4.1.9590.8/000000.dcm"
    _save(views[1], root / p1)  # the CSV's literal path
    # The TCIA download's real layout: a different folder chain and 1-1.dcm.
    _save(
        views[2], root / "Mass-Training_P_00004_RIGHT_MLO/07-20-2016-DDSM-1/1.000000-full/1-1.dcm"
    )
    _save(views[3], root / p3)
    _save(views[4], root / p4)
    _write_csv(
        root / "mass_case_description_train_set.csv",
        CBIS_HEADER,
        [
            _cbis_row("P_00001", "LEFT", "CC", "1", "BENIGN", p1),
            _cbis_row("P_00001", "LEFT", "CC", "2", "MALIGNANT", p1),  # worst abnormality wins
            _cbis_row("P_00004", "RIGHT", "MLO", "1", "BENIGN_WITHOUT_CALLBACK", p2),
        ],
    )
    _write_csv(
        root / "mass_case_description_test_set.csv",
        CBIS_HEADER,
        [_cbis_row("P_00016", "LEFT", "MLO", "1", "MALIGNANT", p3)],
    )
    calc_header = [h if h != "breast_density" else "breast density" for h in CBIS_HEADER]
    _write_csv(
        root / "calc_case_description_train_set.csv",
        calc_header,
        [_cbis_row("P_00005", "RIGHT", "CC", "1", "BENIGN", p4, kind="calcification")],
    )


def test_cbis_labels_official_split_and_tcia_paths(tmp_path, views):
    make_cbis(tmp_path, views)
    ds = load_cbis_ddsm(tmp_path, PRE, val_fraction=0.0)
    meta = {ds.metadata(i)["patient_id"]: ds.metadata(i) for i in range(len(ds))}
    assert set(meta) == {"P_00001", "P_00004", "P_00005", "P_00016"}
    assert meta["P_00001"]["label"] == "malignant"  # BENIGN + MALIGNANT on one image
    assert meta["P_00004"]["label"] == "benign"  # BENIGN_WITHOUT_CALLBACK
    assert meta["P_00004"]["path"].endswith("1-1.dcm")
    assert meta["P_00005"]["label"] == "benign" and meta["P_00005"]["abnormality"] == "calc"
    assert meta["P_00016"]["split"] == "test"
    assert {meta[p]["split"] for p in ("P_00001", "P_00004", "P_00005")} == {"train"}
    image, label = ds[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert label in (0, 1) and ds.class_names == ["benign", "malignant"]
    assert len(ds.subset("test")) == 1
    mass_only = load_cbis_ddsm(tmp_path, PRE, abnormality=("mass",), val_fraction=0.0)
    assert len(mass_only) == 3


def test_cbis_validation_comes_from_training_patients_only(tmp_path, views):
    make_cbis(tmp_path, views)
    ds = load_cbis_ddsm(tmp_path, PRE, val_fraction=0.34, seed=0)
    splits = {ds.metadata(i)["patient_id"]: ds.metadata(i)["split"] for i in range(len(ds))}
    assert list(splits.values()).count("val") == 1
    assert splits["P_00016"] == "test"


def test_cbis_patient_in_both_official_splits_goes_wholly_to_test(tmp_path, views):
    make_cbis(tmp_path, views)
    # P_00001 also has a calcification in the official test set (another image).
    p5 = "Calc-Test_P_00001_LEFT_MLO/1.3.6.1.4.1.9590.9/1.3.6.1.4.1.9590.10/000000.dcm"
    _save(views[5], tmp_path / p5)
    calc_header = [h if h != "breast_density" else "breast density" for h in CBIS_HEADER]
    _write_csv(
        tmp_path / "calc_case_description_test_set.csv",
        calc_header,
        [_cbis_row("P_00001", "LEFT", "MLO", "1", "BENIGN", p5, kind="calcification")],
    )
    for seed in range(6):  # whichever training patients validation takes
        ds = load_cbis_ddsm(tmp_path, PRE, val_fraction=0.5, seed=seed)
        per_patient: dict[str, set[str]] = {}
        for i in range(len(ds)):
            meta = ds.metadata(i)
            per_patient.setdefault(meta["patient_id"], set()).add(meta["split"])
        assert per_patient["P_00001"] == {"test"}, seed
        assert all(len(splits) == 1 for splits in per_patient.values()), per_patient
    official = {ds.metadata(i)["path"]: ds.metadata(i)["official_split"] for i in range(len(ds))}
    assert sorted(official.values()).count("train") == 3  # what CBIS-DDSM said is kept
    assert len(ds.subset("test")) == 3  # P_00016 + both images of P_00001


def test_cbis_patient_splits_rule():
    official = {"a1": "train", "a2": "test", "b1": "train", "c1": "test", "a3": "train"}
    patients = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C"}
    assert patient_splits(official, patients) == {"A": "test", "B": "train", "C": "test"}


def test_cbis_errors_on_missing_images_columns_and_csvs(tmp_path, views):
    make_cbis(tmp_path, views)
    (
        tmp_path / "Mass-Test_P_00016_LEFT_MLO/1.3.6.1.4.1.9590.5/1.3.6.1.4.1.9590.6/000000.dcm"
    ).unlink()
    with pytest.raises(FileNotFoundError, match="1 of 4 images .* missing"):
        load_cbis_ddsm(tmp_path, PRE)
    assert len(load_cbis_ddsm(tmp_path, PRE, missing="skip")) == 3
    rows = list(csv.reader((tmp_path / "mass_case_description_test_set.csv").open()))
    _write_csv(
        tmp_path / "mass_case_description_test_set.csv", rows[0][:9], [r[:9] for r in rows[1:]]
    )
    with pytest.raises(DatasetLayoutError, match="missing column.*pathology"):
        load_cbis_ddsm(tmp_path, PRE)
    with pytest.raises(DatasetLayoutError, match="none of the CBIS-DDSM description CSVs"):
        load_cbis_ddsm(tmp_path / "empty", PRE)
    assert split_from_path("Calc-Test_P_00038_LEFT_CC/x/y/000000.dcm") == "test"


# --- VinDr-Mammo ------------------------------------------------------------------------------

VINDR_HEADER = [
    "study_id",
    "series_id",
    "image_id",
    "laterality",
    "view_position",
    "height",
    "width",
    "breast_birads",
    "breast_density",
    "split",
]


def make_vindr(root: Path, views) -> None:
    rows = []
    for i, (study, birads, split) in enumerate(
        [
            ("s1", "BI-RADS 1", "training"),
            ("s1", "BI-RADS 2", "training"),
            ("s2", "BI-RADS 3", "training"),
            ("s2", "BI-RADS 4", "training"),
            ("s3", "BI-RADS 5", "test"),
            ("s3", "BI-RADS 1", "test"),
        ]
    ):
        image_id = f"img{i}"
        ds = views[i]
        _save(ds, root / "images" / study / f"{image_id}.dicom")
        rows.append(
            [
                study,
                "ser",
                image_id,
                ds.ImageLaterality,
                ds.ViewPosition,
                "256",
                "208",
                birads,
                "DENSITY B",
                split,
            ]
        )
    _write_csv(root / "breast-level_annotations.csv", VINDR_HEADER, rows)


def test_vindr_default_birads_mapping_and_official_split(tmp_path, views):
    make_vindr(tmp_path, views)
    ds = load_vindr_mammo(tmp_path, PRE, val_fraction=0.0)
    got = {ds.metadata(i)["image_id"]: ds.metadata(i) for i in range(len(ds))}
    assert {k: v["label"] for k, v in got.items()} == {
        "img0": "benign",
        "img1": "benign",
        "img2": "benign",
        "img3": "malignant",
        "img4": "malignant",
        "img5": "benign",
    }
    assert {k: v["split"] for k, v in got.items() if v["study_id"] == "s3"} == {
        "img4": "test",
        "img5": "test",
    }
    assert ds.counts()["test"] == {"benign": 1, "malignant": 1}
    image, label = ds[3]
    assert image.shape == (1, 32, 32) and label == 1


def test_vindr_custom_mapping_drops_and_relabels(tmp_path, views):
    make_vindr(tmp_path, views)
    lesion_only = {1: None, 2: "benign", 3: "malignant", 4: "malignant", 5: "malignant"}
    ds = load_vindr_mammo(tmp_path, PRE, birads_map=lesion_only, val_fraction=0.0)
    assert sorted(ds.metadata(i)["image_id"] for i in range(len(ds))) == [
        "img1",
        "img2",
        "img3",
        "img4",
    ]
    assert ds.labels == [0, 1, 1, 1]
    with pytest.raises(DatasetLayoutError, match="BI-RADS 5 has no entry"):
        load_vindr_mammo(
            tmp_path, PRE, birads_map={1: "benign", 2: "benign", 3: "benign", 4: "malignant"}
        )
    with pytest.raises(ValueError, match="birads_map values"):
        load_vindr_mammo(tmp_path, PRE, birads_map={1: "cancer"})


def test_vindr_validation_is_carved_from_training_studies(tmp_path, views):
    make_vindr(tmp_path, views)
    ds = load_vindr_mammo(tmp_path, PRE, val_fraction=0.5, seed=1)
    per_study = {}
    for i in range(len(ds)):
        m = ds.metadata(i)
        per_study.setdefault(m["study_id"], set()).add(m["split"])
    assert per_study["s3"] == {"test"}
    assert sorted(s for k, v in per_study.items() if k != "s3" for s in v) == ["train", "val"]


def test_vindr_errors_on_missing_files_and_columns(tmp_path, views):
    make_vindr(tmp_path, views)
    (tmp_path / "images" / "s2" / "img2.dicom").unlink()
    with pytest.raises(FileNotFoundError, match="img2.dicom"):
        load_vindr_mammo(tmp_path, PRE)
    rows = list(csv.reader((tmp_path / "breast-level_annotations.csv").open()))
    keep = [i for i, c in enumerate(rows[0]) if c != "split"]
    _write_csv(
        tmp_path / "breast-level_annotations.csv",
        [rows[0][i] for i in keep],
        [[r[i] for i in keep] for r in rows[1:]],
    )
    with pytest.raises(DatasetLayoutError, match=r"missing column\(s\) \['split'\]"):
        load_vindr_mammo(tmp_path, PRE)
    with pytest.raises(DatasetLayoutError, match="no breast-level_annotations.csv"):
        load_vindr_mammo(tmp_path / "nowhere", PRE)


# --- INbreast -------------------------------------------------------------------------------

INBREAST_HEADER = [
    "Patient ID",
    "Patient age",
    "Laterality",
    "View",
    "Acquisition date",
    "File Name",
    "ACR",
    "Bi-Rads",
]


def make_inbreast(root: Path, views) -> None:
    entries = [
        ("20586908", "6c613a14b80a8591", "R", "CC", "1"),
        ("20586934", "6c613a14b80a8591", "L", "CC", "4a"),
        ("22678622", "61b13c59bcba149e", "R", "MLO", "2"),
        ("22678646", "61b13c59bcba149e", "L", "MLO", "6"),
        ("24065530", "8ea0b5e7b8a9ce61", "R", "CC", "3"),
        ("24065584", "8ea0b5e7b8a9ce61", "L", "CC", "5"),
    ]
    rows = []
    for i, (file_name, patient, side, view, birads) in enumerate(entries):
        view_code = "ML" if view == "MLO" else view
        _save(
            views[i], root / "AllDICOMs" / f"{file_name}_{patient}_MG_{side}_{view_code}_ANON.dcm"
        )
        rows.append(["removed", "removed", side, view_code, "201001", file_name, "2", birads])
    rows.append(["", "", "", "", "", "", "", ""])  # the sheet's blank footer row
    _write_csv(root / "INbreast.csv", INBREAST_HEADER, rows, delimiter=";")


def test_inbreast_birads_labels_and_patient_level_split(tmp_path, views):
    make_inbreast(tmp_path, views)
    ds = load_inbreast(tmp_path, PRE, fractions=(0.34, 0.33, 0.33), seed=0)
    got = {ds.metadata(i)["file_name"]: ds.metadata(i) for i in range(len(ds))}
    assert {k: v["label"] for k, v in got.items()} == {
        "20586908": "benign",
        "20586934": "malignant",  # 4a falls back to 4
        "22678622": "benign",
        "22678646": "malignant",
        "24065530": "benign",
        "24065584": "malignant",
    }
    per_patient = {}
    for meta in got.values():
        per_patient.setdefault(meta["patient_id"], set()).add(meta["split"])
    assert all(len(s) == 1 for s in per_patient.values())
    assert sorted(next(iter(s)) for s in per_patient.values()) == ["test", "train", "val"]
    image, _ = ds[0]
    assert image.shape == (1, 32, 32)
    strict = load_inbreast(
        tmp_path,
        PRE,
        birads_map={
            "1": "benign",
            "2": "benign",
            "3": None,
            "4a": None,
            "4": "malignant",
            "5": "malignant",
            "6": "malignant",
        },
    )
    assert len(strict) == 4


def _sgc(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    cmd = [sys.executable, "-m", "sgc_node", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_evaluate_uses_the_split_seed_the_model_was_trained_with(tmp_path, views):
    # Seven patients with 2-4 views each (benign and malignant): INbreast's seeded patient
    # split puts one patient in test; which one (and so how many images) depends on the seed.
    sizes = [2, 2, 2, 2, 2, 3, 4]
    patients = [f"{n:016x}" for n in range(0xA1, 0xA1 + len(sizes))]
    rows, number = [], 30000000
    for patient, size in zip(patients, sizes, strict=True):
        for j in range(size):
            number += 1
            side, view = "LR"[j % 2], ("CC", "ML")[j // 2 % 2]
            _save(
                views[number % 8],
                tmp_path / "AllDICOMs" / f"{number}_{patient}_MG_{side}_{view}_ANON.dcm",
            )
            rows.append(["removed", "removed", side, view, "201001", str(number), "2", "25"[j % 2]])
    _write_csv(tmp_path / "INbreast.csv", INBREAST_HEADER, rows, delimiter=";")

    def test_images(seed: int) -> int:
        split = random_patient_split(patients, (0.7, 0.15, 0.15), seed)
        return sum(size for p, size in zip(patients, sizes, strict=True) if split[p] == "test")

    seed = next(s for s in range(1, 100) if test_images(s) != test_images(0))
    model = tmp_path / "m"
    tiny = ["--image-size", "16", "--width", "8", "--steps", "4", "--batch-size", "4", "--k", "2"]
    out = _sgc("train", "--data", str(tmp_path), "--format", "inbreast", "--seed", str(seed),
               "--out", str(model), "--quiet", *tiny)  # fmt: skip
    assert out.returncode == 0, out.stderr
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["training"]["split"] == {"seed": seed, "format": "inbreast"}
    out = _sgc("evaluate", "--model", str(model), "--data", str(tmp_path), "--format", "inbreast",
               "--out", str(tmp_path / "ev"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"split seed {seed}" in out.stdout
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == test_images(seed) != test_images(0)


def test_split_seed_of_older_cards_is_the_training_seed():
    assert split_seed({"training": {"split": {"seed": 4}, "config": {"seed": 9}}}) == 4
    assert split_seed({"training": {"config": {"seed": 9}}}) == 9
    assert split_seed({}) == 0


def test_inbreast_errors(tmp_path, views):
    make_inbreast(tmp_path, views)
    next((tmp_path / "AllDICOMs").glob("22678622_*.dcm")).unlink()
    with pytest.raises(FileNotFoundError, match="22678622_"):
        load_inbreast(tmp_path, PRE)
    _write_csv(tmp_path / "INbreast.csv", ["File Name", "ACR"], [["20586908", "1"]], delimiter=";")
    with pytest.raises(DatasetLayoutError, match="Bi-Rads"):
        load_inbreast(tmp_path, PRE)
    with pytest.raises(DatasetLayoutError, match="neither INbreast.xls nor INbreast.csv"):
        load_inbreast(tmp_path / "AllDICOMs", PRE)


# --- the synthetic set --------------------------------------------------------------------------


def test_synthetic_loader_reads_labels_csv_and_splits(tmp_path):
    write_dataset(tmp_path, 7, seed=2, normal_fraction=0.5)
    ds = load_synthetic(tmp_path, PRE)
    assert len(ds) == 28
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert ds.labels == [ds.class_names.index(r["label"]) for r in rows]
    assert set(ds.split) == {"train", "val", "test"}
    lesions_only = load_synthetic(tmp_path, PRE, include_normal=False)
    assert len(lesions_only) == sum(r["finding"] != "normal" for r in rows) < 28
    image, label = lesions_only[0]
    assert image.shape == (1, 32, 32) and 0.0 <= image.min() <= image.max() <= 1.0
    (tmp_path / rows[0]["path"]).unlink()
    with pytest.raises(FileNotFoundError, match="1 of 28 images"):
        load_synthetic(tmp_path, PRE)
    with pytest.raises(DatasetLayoutError, match="no labels.csv"):
        load_synthetic(tmp_path / "images", PRE)
