"""The lesion finder's defined results on awkward views, with an untrained network.

Accuracy is the bundled model's test (tests/test_lesion_bundled.py); here the network's weights
do not matter, only that every view gets a well-formed result in source coordinates: a blank
image, a breast smaller than one window, a view without findings, and the evidence map.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sgc_core.denoise_map import window_scores
from sgc_core.exam import exam_result
from sgc_core.lesion_card import LesionCard
from sgc_core.lesion_scan import LesionScanner
from sgc_core.scan_geometry import scan_dataset
from sgc_core.sde import VPSDE
from sgc_core.unet import architecture_spec, build_score_model
from tests.test_lesion_geometry import _breast_with_dot


@pytest.fixture(scope="module")
def scanner() -> LesionScanner:
    torch.manual_seed(0)
    model = build_score_model(architecture_spec("default", 3, 1, 64, 8), VPSDE())
    return LesionScanner(model, VPSDE(), LesionCard(finding_threshold=0.0, k_fine=2))


def test_view_gets_findings_inside_the_image_and_a_source_map(scanner) -> None:
    ds = _breast_with_dot("R", "MLO", "MONOCHROME1", (520, 400), 0.1)
    scan = scan_dataset(ds, 0.4)
    result = scanner.scan(scan)
    assert result.p_malignant is not None and 0.0 <= result.p_malignant <= 1.0
    assert result.windows > 1 and 1 <= len(result.findings) <= scanner.card.max_findings
    for f in result.findings:
        r0, c0, r1, c1 = f.box
        assert 0 <= r0 < r1 <= 900 and 0 <= c0 < c1 <= 700
        assert r0 <= f.centre[0] <= r1 and c0 <= f.centre[1] <= c1
        assert all(0 <= r <= 899 and 0 <= c <= 699 for r, c in f.outline)
        # The finding lies on the breast (right breast: chest wall on the right), not on air.
        assert f.centre[1] >= scan.geometry.box[1]
        assert 0.0 <= f.p_malignant <= f.p_lesion <= 1.0 + 1e-9
    grid = result.evidence.to_source_grid((900, 700))
    assert grid.shape == (900, 700)
    b = scan.geometry.box
    outside = np.ones((900, 700), dtype=bool)
    outside[b[0] : b[2], b[1] : b[3]] = False
    assert np.all(grid[outside] == 0)


def test_findings_are_sorted_and_thresholded(scanner) -> None:
    scan = scan_dataset(_breast_with_dot("L", "CC", "MONOCHROME2", (400, 200), 0.1), 0.4)
    strict = LesionScanner(scanner.model, scanner.sde, scanner.card.replace(finding_threshold=1.1))
    result = strict.scan(scan)
    assert result.findings == () and result.p_malignant is not None
    loose = scanner.scan(scan)
    probs = [f.p_lesion for f in loose.findings]
    assert probs == sorted(probs, reverse=True)


def test_blank_view_is_unscored_not_a_crash(scanner) -> None:
    ds = _breast_with_dot("L", "CC", "MONOCHROME2", (400, 200), 0.1)
    ds.PixelData = np.zeros((900, 700), np.uint16).tobytes()
    result = scanner.scan(scan_dataset(ds, 0.4))
    assert result.p_malignant is None and result.ood and result.findings == ()
    assert "no breast" in result.ood_reason


@pytest.mark.parametrize("middle", [0, 16])
def test_breast_smaller_than_one_window_gets_one(scanner, middle: int) -> None:
    ds = _breast_with_dot("L", "CC", "MONOCHROME2", (100, 60), 0.1)
    img = np.zeros((900, 700), np.uint16)
    img[80:130, 0:40] = 1800  # a 5 x 4 mm "breast" at the chest wall
    ds.PixelData = img.tobytes()
    finder = LesionScanner(scanner.model, scanner.sde, scanner.card.replace(middle_windows=middle))
    result = finder.scan(scan_dataset(ds, 0.4))
    assert result.windows == 1 and result.p_malignant is not None


def test_exam_skips_unscored_views(scanner) -> None:
    good = scanner.scan(scan_dataset(_breast_with_dot("L", "CC", "MONOCHROME2", (400, 200), 0.1)))
    ds = _breast_with_dot("R", "CC", "MONOCHROME2", (400, 500), 0.1)
    ds.PixelData = np.zeros((900, 700), np.uint16).tobytes()
    blank = scanner.scan(scan_dataset(ds))
    exam = exam_result([good, blank], scanner.card)
    sides = {b.laterality: b for b in exam.breasts}
    assert sides["R"].p_malignant is None and sides["L"].p_malignant is not None
    assert exam.p_malignant is not None and exam.predicted_class in ("malignant", "not malignant")


def test_middle_stage_rescores_only_the_least_normal_windows(scanner) -> None:
    """With middle_windows, the candidates come from the windows the middle stage rescored,
    and a view still gets a located result; without it the scan is unchanged."""
    scan = scan_dataset(_breast_with_dot("R", "CC", "MONOCHROME2", (400, 500), 0.1), 0.4)
    card = scanner.card.replace(middle_windows=4, k_middle=2)
    net = copy.deepcopy(scanner.model)
    torch.manual_seed(1)
    for p in net.parameters():  # the untrained output layer is zero: every error would be 0
        if not p.any():
            p.normal_(0, 0.01)
    finder = LesionScanner(net, scanner.sde, card)
    centres = finder.window_centres(scan)
    err = finder.errors(scan.image, centres, finder.coarse)
    ranked, rescored = finder._rank(scan, centres, err)
    post = finder.posterior(window_scores(err), card.temperature_coarse)
    first4 = {tuple(c) for c in centres[np.argsort(post[:, 0])[:4]]}
    assert len(ranked) == 4 and {tuple(c) for c in ranked} == first4
    changed = (rescored != err).flatten(1).any(1)
    assert int(changed.sum()) == 4
    result = finder.scan(scan)
    assert result.p_malignant is not None and 1 <= len(result.findings) <= card.max_findings
    plain = LesionScanner(net, scanner.sde, scanner.card)
    assert len(plain._rank(scan, centres, err)[0]) == len(centres)


def test_a_wider_window_scans_the_same_view_in_fewer_windows(scanner) -> None:
    """A 128-px window (51 mm, the wide field measured in docs/benchmarks.md) tiles at its
    own stride and still maps its findings into the source image."""
    torch.manual_seed(0)
    wide_net = build_score_model(architecture_spec("default", 3, 1, 128, 8), VPSDE())
    card = LesionCard(finding_threshold=0.0, k_fine=1, crop=128, stride=64)
    wide = LesionScanner(wide_net, VPSDE(), card)
    scan = scan_dataset(_breast_with_dot("R", "CC", "MONOCHROME2", (520, 400), 0.1), 0.4)
    result, narrow = wide.scan(scan), scanner.scan(scan)
    assert 1 <= result.windows < narrow.windows
    assert result.findings
    for f in result.findings:
        r0, c0, r1, c1 = f.box
        assert 0 <= r0 < r1 <= 900 and 0 <= c0 < c1 <= 700


def test_the_calibrated_noise_band_stays_inside_the_trained_one(scanner) -> None:
    """A finder trained on t <= t_max gets its scan band chosen below t_max, or a clear error."""
    from sgc_core.lesion_fit import choose_t_range

    images = torch.rand(12, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    labels = [i % 3 for i in range(12)]
    lo, hi = choose_t_range(scanner, images, labels, t_max=0.2)
    assert 0.0 < lo < hi <= 0.2
    with pytest.raises(ValueError, match="no noise band"):
        choose_t_range(scanner, images, labels, t_max=0.005)


def test_candidates_that_recentre_on_one_peak_become_one_finding() -> None:
    from sgc_core.lesion_scan import Candidate, distinct

    post = np.array([0.1, 0.2, 0.7])
    cands = [
        Candidate(100.0, 100.0, post, 5.0, 2.0),
        Candidate(104.0, 97.0, post, 5.0, 1.5),  # the same lesion, re-centred 5 px away
        Candidate(160.0, 100.0, post, 5.0, 1.0),  # another place
        Candidate(100.0, 110.0, post, 5.0, 0.5),
    ]
    kept = distinct(cands, apart=16)
    assert [(c.row, c.col) for c in kept] == [(100.0, 100.0), (160.0, 100.0)]
    assert distinct(cands, apart=1) == cands
