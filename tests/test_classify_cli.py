"""`sgc classify`: offline classification of files with the node's preprocessing and SR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pytest
from pydicom.data import get_testdata_file

from sgc_core.synth import SynthConfig, generate_study
from worker.reports import PROBABILITY_OF_CANCER


def _sgc(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    return subprocess.run(
        [sys.executable, "-m", "sgc_node", *args], capture_output=True, text=True, env=env
    )


def test_classify_a_study_and_write_its_sr(tiny_model: Path, tmp_path: Path) -> None:
    views = generate_study(5, SynthConfig.for_size("small"))
    (tmp_path / "in").mkdir()
    for i, ds in enumerate(views):
        ds.save_as(tmp_path / "in" / f"{i}.dcm", enforce_file_format=True)
    out = _sgc(
        "classify",
        str(tmp_path / "in"),
        "--model",
        str(tiny_model),
        "--sr",
        str(tmp_path / "sr"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {r["sop_instance_uid"] for r in data["images"]} == {ds.SOPInstanceUID for ds in views}
    assert all(r["predicted_class"] in ("benign", "malignant") for r in data["images"])
    (report,) = data["reports"]
    doc = hd.sr.srread(report)
    assert doc.StudyInstanceUID == views[0].StudyInstanceUID
    by_ref = {
        g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID: g
        for g in doc.content.get_planar_roi_measurement_groups()
    }
    for row in data["images"]:
        group = by_ref[row["sop_instance_uid"]]
        (m,) = group.get_measurements(name=PROBABILITY_OF_CANCER)
        assert float(m.value) == pytest.approx(100 * row["probabilities"]["malignant"], abs=0.01)


def test_unclassifiable_files_are_reported_and_exit_nonzero(
    tiny_model: Path, tmp_path: Path
) -> None:
    ct = get_testdata_file("CT_small.dcm")
    (tmp_path / "notes.txt").write_text("not dicom")
    out = _sgc("classify", ct, str(tmp_path / "notes.txt"), "--model", str(tiny_model))
    assert out.returncode == 1
    assert "notes.txt" in out.stdout and "error" in out.stdout
    # The CT slice is classified (the card's modality policy is "ood") but flagged, with why.
    assert "CT_small.dcm: out of distribution: modality CT is not mammography" in out.stdout
    assert "Traceback" not in out.stderr


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    out = _sgc("classify", get_testdata_file("CT_small.dcm"), "--model", str(tmp_path / "none"))
    assert out.returncode == 1 and "cannot load model" in out.stderr
