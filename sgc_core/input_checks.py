"""What every mammogram has, checked on the image before the model sees it.

Why these checks exist beside the model's bits/dim band: a likelihood model can give an
input that is *simpler* than its training data a high density (Nalisnick et al. 2019), so a
blank or nearly blank image can score inside the band of real mammograms. The card's lower
threshold catches most of them, but not all (a mid-grey blank image was missed by the first
bundled model). These rules do not depend on any model, so they cannot be fooled that way:

* the header says Modality MG (with ``modality_policy="ood"``; "refuse" raises earlier);
* a breast is found: a bright connected region against the detector's background;
* the breast has structure: its presentation values are not (nearly) constant. Parenchyma,
  skin line and quantum noise give every real mammogram a spread of many percent of the
  window; a flat field, a test pattern of one value or an all-white overexposure has none;
* the breast lies against one side edge of the image (the chest wall) and leaves the other
  (the nipple side) open. A CT or MR section or an ultrasound sector sent under a
  mammogram's header passes the header check and, measured with the bundled finder
  (docs/benchmarks.md), its median denoising error lies inside the band the finder's card
  took from its validation views; what gives it away is where it lies: in the middle of the
  frame, or across all of it. Views whose header says they show part of the breast
  (PartialView, or a magnification or spot-compression view modifier) are not held to it;
* the bright region is shaped like a compressed breast: a convex mound that every row
  crosses once, from the chest wall to the skin line. A photograph or an MR section that
  happens to lie against one side edge is ragged or hollow instead.

Each rule returns a reason in words; an image with any reason is flagged out of distribution
(it is still classified, so the flag and the scores are both on record).
"""

from __future__ import annotations

import numpy as np

MAMMOGRAPHY_MODALITIES = frozenset({"MG"})

# Standard deviation of the VOI-mapped [0, 1] values inside the breast below which the image
# has no tissue structure. Synthetic and real mammograms lie at 0.1-0.25; 0.01 is 1 % of the
# window, well below the quantum noise of any exposure.
FLAT_STD = 0.01

# How far in from a side edge the breast may start and still lie against it (the chest
# wall: 10 % of the columns, 2-3 cm on a full-field image, leaves room for a dark strip
# there), how far in counts as reaching the other edge (5 %), and the shares of the rows
# over which the breast must touch the chest-wall side (15 %: small breasts) and may reach
# the other (30 %: large breasts). On the synthetic draws the chest-wall side is touched on
# about half the rows or more; with a 10 % far band, 5 of 240 views of the held-out style
# (MLOs) reached the far side on 34-39 % of rows, with 5 % none did
# (benchmarks/results/lesion_ood/). Set after the `relabelled` inputs of
# benchmarks/ood_inputs.py were seen, before its `pictures` were.
CHEST_WALL_BAND = 0.10
FAR_SIDE_BAND = 0.05
CHEST_WALL_MIN = 0.15
FAR_SIDE_MAX = 0.30
# The share of the bright region's pixels that must lie, row by row, in the run that starts
# at the chest-wall side, and the least area over convex-hull area (solidity). On 4160 views
# of synthetic draws the least were 0.904 and 0.938, the medians 1.000 and 0.995
# (benchmarks/results/lesion_ood/shape-margins.txt). The thresholds leave a fifth of the
# region off those runs and three tenths of the hull empty for the skin folds, the
# inframammary fold and the abdomen of real views. Chosen on the `relabelled` and `pictures` inputs of
# benchmarks/ood_inputs.py (benchmarks/results/lesion_ood/adoption-rule-shape.md).
CHEST_WALL_RUNS_MIN = 0.80
SOLIDITY_MIN = 0.70
# The shape is measured on the mask subsampled to at most this many pixels a side: its
# convex hull on a full-field mask would cost more than the rest of the checks together.
SHAPE_SIDE = 512
# View modifiers (CID 4015 meanings) of a view that shows part of the breast on purpose.
PARTIAL_VIEW_MODIFIERS = ("magnification", "spot compression")


def whole_breast_view(ds) -> bool:
    """Whether the header lets the image be held to the placement rule: not a PartialView,
    and no magnification or spot-compression view modifier (those frame part of the breast,
    away from the chest wall, on purpose)."""
    if str(ds.get("PartialView", "") or "").upper() == "YES":
        return False
    for item in ds.get("ViewModifierCodeSequence", None) or ():
        meaning = str(item.get("CodeMeaning", "") or "").lower()
        if any(m in meaning for m in PARTIAL_VIEW_MODIFIERS):
            return False
    return True


def input_ood_reasons(
    image: np.ndarray, mask: np.ndarray | None, modality: str | None, whole_breast: bool = True
) -> tuple[str, ...]:
    """Reasons (possibly none) why this VOI-mapped [0, 1] ``image`` is not a mammogram.

    ``mask`` is the breast mask of :func:`sgc_core.preprocess.breast_mask` (None: no breast);
    ``whole_breast`` (:func:`whole_breast_view`) False spares the image the placement rule.
    """
    reasons = []
    if modality not in MAMMOGRAPHY_MODALITIES:
        reasons.append(f"modality {modality or '(missing)'} is not mammography (MG)")
    if mask is None:
        reasons.append("no breast found (no bright region against the background)")
    else:
        spread = float(np.std(image[mask])) if mask.any() else 0.0
        if spread < FLAT_STD:
            reasons.append(
                f"no tissue structure (pixel spread {spread:.4f} of the window, below {FLAT_STD})"
            )
        if whole_breast:
            reasons += placement_reasons(mask) or shape_reasons(mask)
    return tuple(reasons)


def placement_reasons(mask: np.ndarray) -> list[str]:
    """Why the bright region is not placed as a breast is on a mammogram (possibly none):
    against one side edge over at least ``CHEST_WALL_MIN`` of the rows, and reaching the
    other over at most ``FAR_SIDE_MAX``. Either side may be the chest wall: which one is
    the header's to say, and a mis-set header must not flag a real breast."""
    if not mask.any():
        return []  # nothing bright: the breast rule above has said so
    left, right = (_touch(mask, band) for band in (CHEST_WALL_BAND, -CHEST_WALL_BAND))
    chest = max(left, right)
    far = _touch(mask, FAR_SIDE_BAND if right >= left else -FAR_SIDE_BAND)
    if chest < CHEST_WALL_MIN:
        return [
            f"the bright region does not lie against a side edge ({chest:.0%} of rows reach "
            f"one, below {CHEST_WALL_MIN:.0%}): a breast lies against the chest wall"
        ]
    if far > FAR_SIDE_MAX:
        return [
            f"the bright region spans the image from side to side ({far:.0%} of rows reach "
            f"both side edges, above {FAR_SIDE_MAX:.0%}): a breast leaves the nipple side open"
        ]
    return []


def shape_reasons(mask: np.ndarray) -> list[str]:
    """Why the bright region is not shaped like a compressed breast (possibly none): too
    little of it in chest-wall runs (:func:`chest_wall_runs`), or too hollow for a convex
    mound (solidity below ``SOLIDITY_MIN``). Meant for a region that passed
    :func:`placement_reasons`, so it has a chest-wall side."""
    from skimage.morphology import convex_hull_image

    step = max(1, -(-max(mask.shape) // SHAPE_SIDE))
    small = _chest_wall_closed(mask[::step, ::step])
    if not small.any():
        return []
    runs = chest_wall_runs(small)
    if runs < CHEST_WALL_RUNS_MIN:
        return [
            f"the bright region is not crossed once by each row from a side edge ({runs:.0%} "
            f"of it lies in runs from the chest-wall side, below {CHEST_WALL_RUNS_MIN:.0%}): "
            "a breast reaches from the chest wall to the skin line"
        ]
    solidity = float(small.sum() / max(1, convex_hull_image(small).sum()))
    if solidity < SOLIDITY_MIN:
        return [
            f"the bright region is not a convex mound (it fills {solidity:.0%} of its convex "
            f"hull, below {SOLIDITY_MIN:.0%}): a compressed breast is one"
        ]
    return []


def _chest_wall_closed(mask: np.ndarray) -> np.ndarray:
    """``mask`` mirrored so the chest wall is at column 0, with the gaps that open only onto
    that edge filled. The chest-wall edge cuts through tissue, so a dark strip or a fatty
    patch reaching it is breast, not air; ``breast_mask`` leaves such gaps open because they
    touch the image border (phantoms' fat below the crop threshold does)."""
    from scipy import ndimage

    left, right = (_touch(mask, band) for band in (CHEST_WALL_BAND, -CHEST_WALL_BAND))
    m = mask if left >= right else mask[:, ::-1]
    padded = np.pad(m, ((0, 0), (1, 0)), constant_values=True)
    return ndimage.binary_fill_holes(padded)[:, 1:]


def chest_wall_runs(mask: np.ndarray) -> float:
    """The share of ``mask``'s pixels that lie in the first run of their row when that run
    starts within ``CHEST_WALL_BAND`` of the chest-wall side (the side edge touched on more
    rows). A breast is crossed once by every row, so for a breast this is near 1."""
    left, right = (_touch(mask, band) for band in (CHEST_WALL_BAND, -CHEST_WALL_BAND))
    m = mask if left >= right else mask[:, ::-1]
    band = max(1, round(CHEST_WALL_BAND * m.shape[1]))
    first = m.argmax(axis=1)
    starts = m.any(axis=1) & (first < band)
    cols = np.arange(m.shape[1])[None, :]
    beyond = ~m & (cols >= first[:, None])  # background after the run's start
    stop = np.where(beyond.any(axis=1), beyond.argmax(axis=1), m.shape[1])
    anchored = np.where(starts, stop - first, 0).sum()
    return float(anchored / max(1, m.sum()))


def _touch(mask: np.ndarray, band: float) -> float:
    """Share of the rows on which ``mask`` reaches within ``|band|`` of the columns of the
    left edge (band > 0) or the right one (band < 0)."""
    width = max(1, round(abs(band) * mask.shape[1]))
    edge = mask[:, :width] if band > 0 else mask[:, -width:]
    return float(edge.any(axis=1).mean())
