"""Hard negatives: the normal windows a finder mistakes for lesions, kept as normal crops.

Why: the finder ranks ~120 windows per view and a view's score is its least normal one, so
what decides a whole-view result is the rare normal window that looks most lesion-like, not
the typical one. Background crops drawn uniformly from the breast (sgc_core/datasets/crops)
seldom show such tissue (a dense clump of gland, a crossing of ducts), so the network hardly
learns that they are normal. Scanning the training views with a finder, and adding its
least-normal windows away from every annotated lesion as ``normal`` crops, puts them in the
training set: the standard bootstrapping of a detector's negatives. Only training views are
mined, so validation and test stay drawn as they were.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pydicom

from sgc_core.datasets.crops import CropSet, LesionAnnotation, cut, far_from_lesions, to_levels
from sgc_core.denoise_map import window_scores
from sgc_core.lesion_scan import LesionScanner
from sgc_core.scan_geometry import scan_dataset


def hardest_windows(
    scanner: LesionScanner, image: np.ndarray, centres: np.ndarray, count: int
) -> np.ndarray:
    """The ``count`` least-normal of ``centres`` under the coarse pass, at least half a crop
    apart (the finder's own rule for distinct candidates), hardest first."""
    if len(centres) == 0:
        return centres
    err = scanner.errors(image, centres, scanner.coarse)
    post = scanner.posterior(window_scores(err), scanner.card.temperature_coarse)
    picked: list[np.ndarray] = []
    for i in np.argsort(post[:, 0]):
        if all(np.hypot(*(centres[i] - p)) >= scanner.card.crop / 2 for p in picked):
            picked.append(centres[i])
        if len(picked) == count:
            break
    return np.array(picked).reshape(-1, 2)


def view_hard_negatives(
    scanner: LesionScanner, note: LesionAnnotation, count: int
) -> list[np.ndarray]:
    """Up to ``count`` hard normal crops of one view (none where no window is far from its
    lesions, or no breast is found)."""
    scan = scan_dataset(pydicom.dcmread(note.path), scanner.card.spacing_mm)
    if not scan.breast_found or not scan.mask.any():
        return []
    centres = scanner.window_centres(scan)
    keep = far_from_lesions(centres[:, 0], centres[:, 1], scan, note, scanner.card.crop)
    picked = hardest_windows(scanner, scan.image, centres[keep], count)
    return [cut(scan.image, r, c, scanner.card.crop) for r, c in picked]


def add_hard_negatives(
    crops: CropSet,
    scanner: LesionScanner,
    notes: Sequence[LesionAnnotation],
    per_view: int,
    max_views: int = 0,
) -> CropSet:
    """``crops`` plus ``per_view`` hard normal crops from each training view of ``notes``
    (the first ``max_views`` of them when > 0: a scan pass costs ~1 s per view on a CPU)."""
    if scanner.card.crop != crops.recipe.crop or scanner.card.spacing_mm != crops.recipe.spacing_mm:
        raise ValueError(
            f"the finder scans {scanner.card.crop} px at {scanner.card.spacing_mm} mm but the "
            f"crops are {crops.recipe.crop} px at {crops.recipe.spacing_mm} mm"
        )
    images, styles = [], []
    train = [n for n in notes if n.split == "train"]
    for note in train[:max_views] if max_views else train:
        for img in view_hard_negatives(scanner, note, per_view):
            images.append(to_levels(img))
            styles.append(note.style)
    if not images:
        return crops
    return crops.with_crops(np.stack(images), "normal", "train", np.asarray(styles))
