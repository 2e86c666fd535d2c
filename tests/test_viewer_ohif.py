"""OHIF shows the node's reports from a real Orthanc: the SR's labels and ROIs over the image,
the finding drawn on the lesion, and the evidence SEG painted over it."""

from __future__ import annotations

import csv
import io
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from sgc_config.settings import Settings
from sgc_core.synth import write_dataset
from sgc_core.view_model import load_view_model
from tests.helpers.mg import MGSpec, mg_dataset
from tests.helpers.ohif import (
    ARTIFACTS,
    LOAD_TIMEOUT_MS,
    browser_page,
    coloured_pixels,
    drawn_outlines,
    image_to_screen,
    load_series,
    ohif_viewer,
    open_study,
    show_sr_in_ohif,
)
from worker import pipeline
from worker.reports import SERIES_DESCRIPTION, Algorithm, ViewResult, build_report
from worker.reports.seg import SEG_SERIES_DESCRIPTION
from worker.runtime import resolve_model_path

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


def _easy_study(folder: Path) -> tuple[list[Path], dict[str, dict]]:
    """A synthetic study whose lesions are known: large and obvious (difficulty 0), classic
    style, 0.28 mm pixels (832 x 640); a malignant calcification cluster in the left breast."""
    labels = write_dataset(
        folder, 1, seed=3, size="medium", difficulty=0.0, monochrome=0.0, style="classic"
    )
    with labels.open() as fh:
        rows = list(csv.DictReader(fh))
    truth = {f"{r['laterality']} {r['view']}": r for r in rows}
    return sorted(folder / r["path"] for r in rows), truth


@pytest.mark.timeout(1500)
def test_ohif_draws_the_finding_on_the_lesion_and_overlays_the_evidence(
    orthanc, tmp_path: Path
) -> None:
    """The embedded default (the bundled lesion finder) classifies a study with a known
    lesion; its SR finding lies on the lesion; OHIF, from Orthanc, draws that finding's outline
    where the lesion is on screen (OHIF's own image-to-screen transform) and, loaded next,
    paints the evidence SEG over the image."""
    images, truth = _easy_study(tmp_path / "synth")
    lesion = truth["L CC"]
    centre = (float(lesion["lesion_row"]), float(lesion["lesion_col"]))
    radius = float(lesion["lesion_radius_px"])
    default = resolve_model_path(Settings(data_dir=tmp_path / "data"))  # no SGC_MODEL
    model = load_view_model(default, "cpu")
    outcomes = pipeline.classify_paths(model, images)
    objects = pipeline.build_reports(model, outcomes, 1, ["tid1500", "seg"])
    (lcc,) = [o for o in outcomes if (o.laterality, o.view) == ("L", "CC")]
    found = lcc.result.findings[0]
    assert math.dist(found.centre, centre) <= radius, (found.centre, centre, radius)

    for path in images:
        orthanc.request("POST", "/instances", path.read_bytes())
    for obj in objects:
        _upload(orthanc, obj.dataset)
    seg_description = f"{SEG_SERIES_DESCRIPTION} left CC"
    assert seg_description in {o.dataset.SeriesDescription for o in objects}

    with ohif_viewer(orthanc.url) as url, browser_page() as page:
        open_study(page, url, lcc.study_uid, SERIES_DESCRIPTION)
        load_series(page, SERIES_DESCRIPTION)
        label = f"Probability of cancer: {round(100 * found.p_malignant, 3):.2f} %"
        page.get_by_text(label).first.wait_for(timeout=LOAD_TIMEOUT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ohif-finding.png"))
        # The smallest outline on screen is the finding's; the view's breast box is larger.
        x, y, w, h = min(drawn_outlines(page), key=lambda b: b[2] * b[3])
        lesion_x, lesion_y = image_to_screen(page, centre[1], centre[0])
        edge_x, _ = image_to_screen(page, centre[1] + radius, centre[0])
        on_screen_radius = abs(edge_x - lesion_x)
        assert math.dist((x + w / 2, y + h / 2), (lesion_x, lesion_y)) <= on_screen_radius

        load_series(page, seg_description)
        page.wait_for_function(
            """() => window.cornerstoneTools.segmentation.state.getSegmentations().length > 0""",
            timeout=LOAD_TIMEOUT_MS,
        )
        # The SEG's innermost segment, in source pixels: where OHIF must paint.
        seg = next(o.dataset for o in objects if o.dataset.SeriesDescription == seg_description)
        rows, cols = np.nonzero(seg.pixel_array[-1])
        pick = np.linspace(0, len(rows) - 1, min(20, len(rows))).astype(int)
        expected = [image_to_screen(page, cols[k], rows[k]) for k in pick]
        x0, y0 = image_to_screen(page, -0.5, -0.5)
        x1, y1 = image_to_screen(page, seg.Columns - 0.5, seg.Rows - 0.5)
        shot = ARTIFACTS / "ohif-evidence.png"
        deadline = time.monotonic() + 120
        while True:  # the labelmap is painted a moment after it is registered
            assert drawn_outlines(page) == []  # the SR's marks are gone: colour is the SEG's
            page.screenshot(path=str(shot))
            painted = np.array(coloured_pixels(shot, (x0, y0, x1 - x0, y1 - y0)) or [(-99, -99)])
            hits = [np.hypot(*(painted - e).T).min() <= 3 for e in expected]
            if np.mean(hits) >= 0.8 or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert np.mean(hits) >= 0.8, f"OHIF painted {np.mean(hits):.0%} of the sampled SEG pixels"
