"""The scan grid's map back to the source image: crop, flip and resample undone exactly.

A bright dot is put at a known source pixel of a breast on a black background; after
``scan_dataset`` (window, crop to the breast, chest wall to the left, resample to 0.4 mm) the
dot must be where ``ScanGeometry.to_scan`` says, and that scan pixel must map back to the dot
within one scan pixel, for both lateralities and views and both photometric encodings. A
finding placed on that dot by the finder's own result builder must then be reported on the dot
in source pixels: its centre, box and outline, and the peak of its view's evidence map.
"""

from __future__ import annotations

import numpy as np
import pytest

from sgc_core.preprocess import PreprocessError
from sgc_core.scan_geometry import ScanGeometry, scan_dataset, source_spacing
from tests.helpers.mg import MGSpec, mg_dataset


def _breast_with_dot(
    lat: str, view: str, photometric: str, dot: tuple[int, int], spacing: float, shape=(900, 700)
):
    spec = MGSpec(rows=shape[0], cols=shape[1], laterality=lat, view=view, photometric=photometric)
    ds = mg_dataset(spec)
    top = (1 << spec.bits_stored) - 1
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    cx = 20.0 if lat == "L" else shape[1] - 21.0  # a gap at the chest wall: the crop must act
    r = ((x - cx) / (0.7 * shape[1])) ** 2 + ((y - 0.55 * shape[0]) / (0.4 * shape[0])) ** 2
    img = np.where(r < 1.0, 0.45 * top, 0.0)
    img[dot[0] - 3 : dot[0] + 4, dot[1] - 3 : dot[1] + 4] = top
    if photometric == "MONOCHROME1":
        img = top - img
    ds.PixelData = img.astype(np.uint16).tobytes()
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    # The standard hanging: a right breast's chest wall is on the image's right (posterior).
    ds.PatientOrientation = [
        "A" if lat == "L" else "P",
        ("R" if lat == "L" else "L") if view == "CC" else "F",
    ]
    return ds


# Detector pitches: 0.1 mm resamples by a whole factor of 4; 0.07 mm by 5.71, so a scan pixel
# straddles source pixels and the map back cannot lean on whole steps.
SPACINGS = [0.1, 0.07]


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("lat", ["L", "R"])
def test_dot_maps_to_scan_and_back(lat, view, photometric, spacing):
    dot = (520, 300 if lat == "L" else 400)
    ds = _breast_with_dot(lat, view, photometric, dot, spacing=spacing)
    scan = scan_dataset(ds, 0.4)
    geo = scan.geometry
    assert geo.flipped == (lat == "R")
    assert geo.box[0] > 0, "the black rows above the breast are cropped"
    assert geo.step == pytest.approx((0.4 / spacing, 0.4 / spacing), rel=0.02)
    sr, sc = geo.to_scan(np.array([dot[0]]), np.array([dot[1]]))
    peak = np.unravel_index(int(np.argmax(scan.image)), scan.image.shape)
    assert abs(peak[0] - sr[0]) <= 1.0 and abs(peak[1] - sc[0]) <= 1.0
    br, bc = geo.to_source(np.array([peak[0]]), np.array([peak[1]]))
    assert np.hypot(br[0] - dot[0], bc[0] - dot[1]) <= 1.5 * max(geo.step)


def test_monochrome1_and_2_give_the_same_scan():
    a = scan_dataset(_breast_with_dot("L", "CC", "MONOCHROME2", (400, 200), 0.1), 0.4)
    b = scan_dataset(_breast_with_dot("L", "CC", "MONOCHROME1", (400, 200), 0.1), 0.4)
    assert a.geometry == b.geometry
    # Equal up to the one stored value that truncating top - x to uint16 moves (1 / 4095).
    np.testing.assert_allclose(a.image, b.image, atol=1.01 / 4095)


@pytest.mark.parametrize("flipped", [False, True])
def test_geometry_round_trip(flipped):
    geo = ScanGeometry((13, 40, 813, 540), (2.5, 2.4), flipped, (900, 700))
    rows, cols = np.array([13.0, 400.2, 812.9]), np.array([40.0, 301.7, 539.0])
    back = geo.to_source(*geo.to_scan(rows, cols))
    np.testing.assert_allclose(back[0], rows, atol=1e-9)
    np.testing.assert_allclose(back[1], cols, atol=1e-9)


def test_missing_spacing_is_assumed_and_said():
    ds = _breast_with_dot("L", "CC", "MONOCHROME2", (400, 200), 0.1)
    del ds.ImagerPixelSpacing, ds.PixelSpacing
    (row, _), assumed = source_spacing(ds)
    assert assumed and row == pytest.approx(240.0 / 900)
    assert scan_dataset(ds, 0.4).spacing_assumed


def test_blank_image_gives_an_unscored_scan_not_a_crash():
    ds = _breast_with_dot("L", "CC", "MONOCHROME2", (400, 200), 0.1)
    ds.PixelData = np.zeros((900, 700), np.uint16).tobytes()
    scan = scan_dataset(ds, 0.4)
    assert not scan.breast_found and scan.ood_reasons


def test_malformed_rows_is_a_preprocess_error():
    ds = _breast_with_dot("L", "CC", "MONOCHROME2", (400, 200), 0.1)
    ds.Rows = [900, 900]
    with pytest.raises(PreprocessError):
        scan_dataset(ds, 0.4)


@pytest.fixture(scope="module")
def bundled_scanner():
    from sgc_core.view_model import load_view_model
    from worker.runtime import BUNDLED_MODELS

    return load_view_model(BUNDLED_MODELS / "sgc-lesion-mammo").scanner


def _inside(outline, point) -> bool:
    """Whether ``point`` (row, col) lies inside the closed polygon ``outline`` (even-odd)."""
    path = np.asarray(outline)
    y, x = point
    inside = False
    for (y0, x0), (y1, x1) in zip(path[:-1], path[1:], strict=True):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("view", ["CC", "MLO"])
@pytest.mark.parametrize("lat", ["L", "R"])
def test_a_finding_on_the_dot_is_reported_on_it_in_source_pixels(
    bundled_scanner, lat, view, photometric, spacing
):
    """What a reader gets, not only the map: a candidate put where the dot lies in the scan
    image (found in the image, not by the map under test), with evidence there, becomes a
    reported finding whose centre, box and outline hold the dot in source pixels, and whose
    evidence map peaks on it, after crop, flip and resample undone."""
    from sgc_core.lesion_scan import Candidate

    dot = (520, 300 if lat == "L" else 400)
    ds = _breast_with_dot(lat, view, photometric, dot, spacing=spacing)
    scan = scan_dataset(ds, 0.4)
    r, c = np.unravel_index(int(np.argmax(scan.image)), scan.image.shape)
    yy, xx = np.mgrid[: scan.image.shape[0], : scan.image.shape[1]]
    emap = np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 6.0**2)).astype(np.float32)
    cand = Candidate(float(r), float(c), np.array([0.1, 0.2, 0.7]), 3.0, 0.85)
    result = bundled_scanner._result(scan, [cand], emap, ood_score=-0.7, n=1)
    (finding,) = result.findings
    assert finding.label == "malignant" and finding.p_malignant == pytest.approx(0.7)
    reach = finding.radius + 0.5 * max(scan.geometry.step)
    assert np.hypot(finding.centre[0] - dot[0], finding.centre[1] - dot[1]) <= reach
    r0, c0, r1, c1 = finding.box
    assert r0 <= dot[0] < r1 and c0 <= dot[1] < c1
    assert _inside(finding.outline, dot)
    src = result.evidence.to_source_grid((int(ds.Rows), int(ds.Columns)))
    peak = np.unravel_index(int(np.argmax(src)), src.shape)
    assert np.hypot(peak[0] - dot[0], peak[1] - dot[1]) <= 1.5 * max(result.evidence.step)
