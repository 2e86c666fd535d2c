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
  window; a flat field, a test pattern of one value or an all-white overexposure has none.

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


def input_ood_reasons(
    image: np.ndarray, mask: np.ndarray | None, modality: str | None
) -> tuple[str, ...]:
    """Reasons (possibly none) why this VOI-mapped [0, 1] ``image`` is not a mammogram.

    ``mask`` is the breast mask of :func:`sgc_core.preprocess.breast_mask` (None: no breast).
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
    return tuple(reasons)
