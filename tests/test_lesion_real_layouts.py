"""Lesion annotations from the real data sets' published layouts (tiny fake trees).

Each test puts lesions at known pixels the way the data set records them (a CBIS-DDSM ROI mask
beside its crop, VinDr-Mammo boxes, INbreast OsiriX contours) and checks that the reader finds
them there, with the right class, and that crops are cut around every lesion of a view.
"""

from __future__ import annotations

import copy
import plistlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from sgc_core.datasets.crops import CROP_CLASSES, CropDataError, CropRecipe, build_crops
from sgc_core.datasets.lesion_notes import read_lesion_annotations
from sgc_core.synth import generate_study
from tests.test_data_datasets import (
    CBIS_HEADER,
    INBREAST_HEADER,
    VINDR_HEADER,
    _cbis_row,
    _save,
    _write_csv,
)


@pytest.fixture(scope="module")
def views() -> list[pydicom.Dataset]:
    return generate_study(1) + generate_study(2)


def _mask_like(ds: pydicom.Dataset, centre: tuple[int, int], radius: int) -> pydicom.Dataset:
    """A binary ROI mask of ``ds``'s size with a disc at ``centre`` (as CBIS-DDSM ships it)."""
    mask = copy.deepcopy(ds)
    rr, cc = np.ogrid[: ds.Rows, : ds.Columns]
    disc = (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2
    mask.PixelData = (disc * 255).astype(np.uint16).tobytes()
    mask.SOPInstanceUID = pydicom.uid.generate_uid()
    return mask


def _crop_of(ds: pydicom.Dataset) -> pydicom.Dataset:
    crop = copy.deepcopy(ds)
    crop.Rows, crop.Columns = 32, 32
    crop.PixelData = np.zeros((32, 32), np.uint16).tobytes()
    return crop


def make_cbis(root: Path, views) -> None:
    full = "Mass-Training_P_00001_LEFT_CC/1.2.3/1.2.4/000000.dcm"
    roi1, roi2 = (f"Mass-Training_P_00001_LEFT_CC_{n}/1.2.5/1.2.6/000001.dcm" for n in (1, 2))
    _save(views[0], root / full)
    # The TCIA layout: ROI crop and mask side by side, the mask named 1-1 or 1-2 at random.
    for n, (centre, radius) in ((1, ((60, 50), 6)), (2, ((150, 100), 12))):
        folder = root / f"Mass-Training_P_00001_LEFT_CC_{n}/07-20-2016-DDSM-1/1.000000-ROI"
        _save(_crop_of(views[0]), folder / ("1-1.dcm" if n == 1 else "1-2.dcm"))
        _save(_mask_like(views[0], centre, radius), folder / ("1-2.dcm" if n == 1 else "1-1.dcm"))
    rows = [
        _cbis_row("P_00001", "LEFT", "CC", "1", "BENIGN", full),
        _cbis_row("P_00001", "LEFT", "CC", "2", "MALIGNANT", full),
    ]
    rows[0][-1], rows[1][-1] = roi1, roi2
    _write_csv(root / "mass_case_description_train_set.csv", CBIS_HEADER, rows)


def test_cbis_roi_masks_give_each_abnormality_its_place_and_class(tmp_path, views):
    make_cbis(tmp_path, views)
    (note,) = read_lesion_annotations(tmp_path, "cbis-ddsm")
    assert note.finding == "malignant" and note.split in ("train", "val")
    assert (note.row, note.col) == pytest.approx((150, 100), abs=0.5)
    assert note.radius == pytest.approx(12, rel=0.1)
    ((finding, row, col, radius),) = note.others
    assert finding == "benign" and (row, col) == pytest.approx((60, 50), abs=0.5)
    crops = build_crops([note], CropRecipe(lesion_crops=2, background_crops=3))
    names = [CROP_CLASSES[i] for i in crops.labels]
    assert names.count("malignant") == 2 and names.count("benign") == 2


FINDINGS_HEADER = ["image_id", "study_id", "finding_categories", "finding_birads"]
FINDINGS_HEADER += ["xmin", "ymin", "xmax", "ymax"]


def make_vindr(root: Path, views) -> None:
    images = [("s1", "BI-RADS 1", "training"), ("s1", "BI-RADS 4", "training")]
    images += [("s2", "BI-RADS 3", "test"), ("s2", "BI-RADS 2", "test")]
    rows = []
    for i, (study, birads, split) in enumerate(images):
        ds = views[i]
        _save(ds, root / "images" / study / f"img{i}.dicom")
        rows.append([study, "ser", f"img{i}", ds.ImageLaterality, ds.ViewPosition, "256", "208"])
        rows[-1] += [birads, "DENSITY B", split]
    _write_csv(root / "breast-level_annotations.csv", VINDR_HEADER, rows)
    _write_csv(
        root / "finding_annotations.csv",
        FINDINGS_HEADER,
        [
            ["img0", "s1", "['No Finding']", "", "", "", "", ""],
            ["img1", "s1", "['Mass']", "BI-RADS 4", "40", "100", "60", "130"],
            ["img2", "s2", "['Mass']", "BI-RADS 3", "10", "20", "30", "30"],
            # img3: BI-RADS 2 breast without a box: left out, its finding has no place
        ],
    )


def test_vindr_boxes_give_centres_and_unboxed_abnormal_breasts_are_left_out(tmp_path, views):
    make_vindr(tmp_path, views)
    notes = {Path(n.path).stem: n for n in read_lesion_annotations(tmp_path, "vindr-mammo")}
    assert set(notes) == {"img0", "img1", "img2"}
    assert notes["img0"].finding == "normal"
    assert notes["img1"].finding == "malignant"
    assert (notes["img1"].row, notes["img1"].col, notes["img1"].radius) == (115, 50, 15)
    assert notes["img2"].finding == "benign" and notes["img2"].split == "test"


def _roi(points: list[tuple[float, float]], name: str = "Mass") -> dict:
    return {
        "Name": name,
        "NumberOfPoints": len(points),
        "Point_px": [f"({x}, {y})" for x, y in points],
    }


def make_inbreast(root: Path, views) -> None:
    entries = [("111", "p1", "R", "CC", "1"), ("222", "p1", "L", "CC", "4a")]
    entries += [("333", "p2", "R", "MLO", "2")]
    rows = []
    for i, (file_name, patient, side, view, birads) in enumerate(entries):
        _save(views[i], root / "AllDICOMs" / f"{file_name}_{patient}_MG_{side}_{view}_ANON.dcm")
        rows.append(["removed", "removed", side, view, "201001", file_name, "2", birads])
    _write_csv(root / "INbreast.csv", INBREAST_HEADER, rows, delimiter=";")
    square = [(40.0, 80.0), (60.0, 80.0), (60.0, 100.0), (40.0, 100.0)]  # x, y: centre (90, 50)
    doc = {"Images": [{"ROIs": [_roi(square), _roi([(5.0, 5.0)], "Calcification")]}]}
    (root / "AllXML").mkdir()
    (root / "AllXML" / "222.xml").write_bytes(plistlib.dumps(doc))


def test_inbreast_contours_give_centres_and_single_points_are_dropped(tmp_path, views):
    make_inbreast(tmp_path, views)
    notes = {Path(n.path).name[:3]: n for n in read_lesion_annotations(tmp_path, "inbreast")}
    assert set(notes) == {"111", "222"}  # 333: BI-RADS 2 without a contour is left out
    assert notes["111"].finding == "normal"
    mal = notes["222"]
    assert mal.finding == "malignant" and (mal.row, mal.col) == (90.0, 50.0)
    assert mal.radius == pytest.approx((400 / np.pi) ** 0.5) and mal.others == ()


def test_a_wrong_layout_is_one_line_and_a_non_zero_exit(tmp_path):
    with pytest.raises(CropDataError, match="CBIS-DDSM"):
        read_lesion_annotations(tmp_path, "cbis-ddsm")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sgc_node",
            "train-lesion",
            str(tmp_path),
            "--out",
            str(tmp_path / "m"),
            "--format",
            "vindr-mammo",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "breast-level_annotations.csv" in run.stderr and "Traceback" not in run.stderr
