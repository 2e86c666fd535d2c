"""Where in a window a finding lies: the peak of its evidence and the blob around it.

Why a module of its own: the finder locates a candidate twice over, first on the coarse
evidence map of the whole breast (one (t, eps) pair per window, overlap-averaged) and, with a
card whose ``locate_sigma`` is set, again on the fine pass's evidence of its own window
(``k_fine`` pairs, so far less noisy). Both read a map the same way: a peak, and the radius
of the half-maximum blob that holds it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def blob_radius(emap: np.ndarray, r: float, c: float, half: int) -> float:
    """Radius of the half-maximum blob of ``emap`` around (r, c), in map pixels, clipped to
    3 .. ``half``; ``half / 2`` where the map is not positive there (no blob to measure)."""
    r0, c0 = max(int(r) - half, 0), max(int(c) - half, 0)
    patch = emap[r0 : int(r) + half, c0 : int(c) + half]
    inside = 0 <= int(r) < emap.shape[0] and 0 <= int(c) < emap.shape[1]
    peak = emap[int(r), int(c)] if inside else 0.0
    if patch.size == 0 or peak <= 0:
        return half / 2
    labels, _ = ndimage.label(patch >= 0.5 * peak)
    at = labels[min(int(r) - r0, patch.shape[0] - 1), min(int(c) - c0, patch.shape[1] - 1)]
    return float(np.clip(math.sqrt((labels == at).sum() / math.pi), 3.0, half))


def smoothed(evidence: np.ndarray, breast: np.ndarray, sigma: float) -> np.ndarray:
    """Evidence smoothed with a Gaussian of ``sigma`` pixels, zero outside the breast.

    Why smoothing: a single pixel's denoising-error difference is noise; a lesion is a blob."""
    return ndimage.gaussian_filter(evidence.astype(np.float64), sigma) * breast


def window_peak(smooth: np.ndarray, margin: int, reach: float = 0.0) -> tuple[int, int] | None:
    """(row, col) of a window's (smoothed) evidence maximum at least ``margin`` pixels from
    its edge and, with ``reach`` > 0, within ``reach`` pixels of its centre; None when no such
    pixel has positive evidence.

    Why the margin: the network sees zeros beyond the image and the window's edge as a hard
    border, so the last few pixels' denoising errors say more about the border than about
    tissue. Why a reach: the window is centred on the coarse map's peak, and a fine peak far
    from it can be other structure in the same window rather than the candidate itself.
    """
    h, w = smooth.shape
    allowed = np.zeros(smooth.shape, dtype=bool)
    allowed[margin : h - margin, margin : w - margin] = True
    if reach > 0:
        rows, cols = np.ogrid[:h, :w]
        allowed &= (rows - h // 2) ** 2 + (cols - w // 2) ** 2 <= reach**2
    inner = np.where(allowed, smooth, -np.inf)
    if not allowed.any() or inner.max() <= 0:
        return None
    i, j = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(i), int(j)


def fine_location(
    evidence: np.ndarray,
    breast: np.ndarray,
    centre: tuple[float, float],
    sigma: float,
    margin: int,
    reach: float = 0.0,
) -> tuple[float, float, float] | None:
    """(row, col, radius) on the scan grid of the evidence peak of the square window cut at
    ``centre`` (``sgc_core.datasets.crops.cut``: its origin is the rounded centre minus half
    the window), or None when the window holds no positive evidence (within ``reach``)."""
    half = evidence.shape[0] // 2
    smooth = smoothed(evidence, breast, sigma)
    peak = window_peak(smooth, margin, reach)
    if peak is None:
        return None
    r0, c0 = round(centre[0]) - half, round(centre[1]) - half
    return float(r0 + peak[0]), float(c0 + peak[1]), blob_radius(smooth, *peak, half)
