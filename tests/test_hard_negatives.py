"""Hard negatives: the finder's least-normal windows away from every lesion become normal crops.

An untrained network is enough here: what is tested is which windows are taken (the least
normal, distinct, never near a lesion), that only training views are mined, and that a
finder and crops of different geometry are refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgc_core.datasets.crops import (
    CROP_CLASSES,
    CropRecipe,
    LesionAnnotation,
    build_crops,
    far_from_lesions,
    lesions_on_grid,
)
from sgc_core.denoise_map import window_scores
from sgc_core.hard_negatives import add_hard_negatives, hardest_windows
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
    return LesionScanner(model, VPSDE(), LesionCard())


@pytest.fixture()
def notes(tmp_path) -> list[LesionAnnotation]:
    out = []
    for split, lat in (("train", "R"), ("val", "L")):
        path = tmp_path / f"{split}.dcm"
        _breast_with_dot(lat, "CC", "MONOCHROME2", (520, 400), 0.1).save_as(
            path, enforce_file_format=True
        )
        out.append(LesionAnnotation(str(path), "malignant", split, 520.0, 400.0, radius=30.0))
    return out


def test_hardest_windows_are_the_least_normal_distinct_and_far_from_the_lesion(
    scanner, notes
) -> None:
    import pydicom

    note = notes[0]
    scan = scan_dataset(pydicom.dcmread(note.path), 0.4)
    centres = scanner.window_centres(scan)
    far = centres[far_from_lesions(centres[:, 0], centres[:, 1], scan, note, 64)]
    assert 3 <= len(far) < len(centres)  # the rule removed the windows over the lesion
    picked = hardest_windows(scanner, scan.image, far, 3)
    assert len(picked) == 3
    r, c, radius = lesions_on_grid(scan, note)[0]
    assert np.all(np.hypot(picked[:, 0] - r, picked[:, 1] - c) > radius + 48)
    for i in range(3):
        for j in range(i):
            assert np.hypot(*(picked[i] - picked[j])) >= 32
    err = scanner.errors(scan.image, far, scanner.coarse)
    normal = scanner.posterior(window_scores(err), scanner.card.temperature_coarse)[:, 0]
    first = int(np.flatnonzero((far == picked[0]).all(1))[0])
    assert normal[first] == normal.min()


def test_only_training_views_are_mined_and_added_as_normal(scanner, notes) -> None:
    crops = build_crops(notes, CropRecipe())
    out = add_hard_negatives(crops, scanner, notes, per_view=2)
    added = len(out.labels) - len(crops.labels)
    assert added == 2
    assert np.all(out.labels[-added:] == CROP_CLASSES.index("normal"))
    assert np.all(out.splits[-added:] == "train")
    assert (out.splits == "val").sum() == (crops.splits == "val").sum()
    assert out.images.dtype == np.uint8 and out.images.shape[1:] == (64, 64)


def test_a_finder_of_other_geometry_is_refused(scanner, notes) -> None:
    crops = build_crops(notes, CropRecipe(crop=32, stride=16))
    with pytest.raises(ValueError, match="32 px"):
        add_hard_negatives(crops, scanner, notes, per_view=1)
