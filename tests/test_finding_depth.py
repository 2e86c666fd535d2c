"""benchmarks/finding_depth: a finding's depth is read in the breast, chest wall 0 to nipple 1,
the same for a left and a right breast whatever the image's orientation."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from benchmarks.finding_depth import main, normal_tops
from sgc_core.scan_geometry import scan_dataset
from sgc_core.synth.dataset import write_dataset


def _source_point(path, fraction: float) -> tuple[float, float]:
    """The source pixel at ``fraction`` of the breast's depth, on the breast's middle row."""
    scan = scan_dataset(pydicom.dcmread(path), 0.4)
    rows = np.flatnonzero(scan.mask.any(1))
    deepest = np.flatnonzero(scan.mask.any(0)).max()
    r, c = scan.geometry.to_source(
        np.array([float(rows[len(rows) // 2])]), np.array([fraction * deepest])
    )
    return float(r[0]), float(c[0])


def test_depth_is_measured_from_the_chest_wall_for_both_breasts(tmp_path, capsys):
    write_dataset(tmp_path / "d", 1, seed=3, style="ducts", hold_out=None, normal_fraction=1.0)
    images = tmp_path / "d" / "images"
    (patient,) = [p.name for p in images.iterdir()]
    views = [
        {"part": "x", "patient": patient, "path": name, "finding": "normal",
         "findings": [{"centre": _source_point(images / patient / name, 0.3), "p_malignant": p}]}
        for name, p in (("R_CC.dcm", 0.2), ("L_CC.dcm", 0.6))
    ]  # fmt: skip
    views.append({"part": "x", "patient": patient, "path": "R_MLO.dcm", "finding": "normal",
                  "findings": []})  # fmt: skip
    (tmp_path / "views.json").write_text(json.dumps(views))
    assert main(["--views", str(tmp_path / "views.json"), "--images", f"x={images}"]) == 0
    out = capsys.readouterr().out
    assert "x: 2 normal views with a finding" in out  # the view without a finding is left out
    assert "mean P(malignant) 0.4" in out
    tops = normal_tops(views, "x", images)
    assert tops[:, 0] == pytest.approx([0.3, 0.3], abs=0.01)  # R (mirrored on the grid) and L


def test_an_images_option_without_a_folder_is_refused(tmp_path):
    (tmp_path / "views.json").write_text("[]")
    with pytest.raises(SystemExit, match="expected PART=FOLDER"):
        main(["--views", str(tmp_path / "views.json"), "--images", "test"])
