"""OHIF shows the node's SR: the probability label over the image, from a real Orthanc."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.helpers.mg import MGSpec, mg_dataset
from tests.helpers.ohif import ARTIFACTS, ohif_viewer, show_sr_in_ohif
from worker.reports import SERIES_DESCRIPTION, Algorithm, ViewResult, build_report

pytestmark = [pytest.mark.browser, pytest.mark.orthanc, pytest.mark.slow]


def _upload(archive, ds) -> None:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    archive.request("POST", "/instances", buf.getvalue())


def test_ohif_draws_probability_label_and_roi(orthanc, tmp_path: Path) -> None:
    study = generate_uid()
    views = [("L", "CC", 0.87), ("R", "CC", 0.12), ("L", "MLO", 0.64), ("R", "MLO", 0.2)]
    sources, results = [], []
    for i, (lat, view, p) in enumerate(views):
        ds = mg_dataset(
            MGSpec(rows=512, cols=384, laterality=lat, view=view, study_uid=study, seed=i)
        )
        # OHIF 3.13.2 stops rendering an image whose VOILUTFunction is present ("Invalid VOI
        # LUT function", seen with LINEAR); the attribute is optional and LINEAR is its default.
        del ds.VOILUTFunction
        _upload(orthanc, ds)
        sources.append(ds)
        results.append(ViewResult(ds.SOPInstanceUID, lat, view, p, (40, 30, 480, 300)))
    sr = build_report(
        sources, results, Algorithm("sgc-demo", "1.0", "ab" * 32, 0.5, "malignant"), 1
    )
    _upload(orthanc, sr)

    with ohif_viewer(orthanc.url) as url:
        text = show_sr_in_ohif(url, study, SERIES_DESCRIPTION, ARTIFACTS / "ohif-sr.png")

    labels = re.findall(r"Probability of cancer: ([\d.]+) %", text)
    assert labels, text[-2000:]
    # OHIF shows the measurement of the view in the viewport: one of ours, to the hundredth.
    assert {float(v) for v in labels} <= {100 * p for _, _, p in views}
    assert (ARTIFACTS / "ohif-sr.png").stat().st_size > 10_000
