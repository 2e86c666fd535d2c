"""The detector and image processing of the phantom family: attenuation -> presentation values.

The classic style keeps its own chain in phantom.py (byte-identical to the generator before
styles). The family's chain differs from it in what a style can vary (styles.py) and in one
property the truth test relies on: everything except the lesion is the same with or without
the lesion. The quantum noise is drawn as N0 e^-A + sqrt(N0 e^-A) z with z drawn once
(a Poisson draw's random stream depends on its mean, so a lesion would reshuffle the noise
of the whole image), and the display scaling and window come from the lesion-free,
noise-free background. The Gaussian approximation of Poisson noise is exact to well under
1 % at the counts per pixel here (hundreds at 70 um, millions at 0.9 mm).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from sgc_core.synth.config import lerp
from sgc_core.synth.lesions import MU_FAT
from sgc_core.synth.styles import Style
from sgc_core.synth.texture import power_law_field, resample

FLUENCE_PER_MM2 = 4.0e6  # as phantom.py: incident photons per mm^2 without the breast
DEVICES_PER_STYLE = 4  # fixed-pattern noise is per detector: each style has a few


@dataclass(frozen=True)
class Exposure:
    pixels: np.ndarray  # uint16 presentation values (bright = dense)
    window_center: float
    window_width: float


@dataclass(frozen=True)
class Anatomy:
    """What the detector needs of the rendered breast (all arrays share the image shape)."""

    atten: np.ndarray  # with the lesion
    background: np.ndarray  # the same without it
    inside: np.ndarray  # bool: under the breast outline
    tissue: np.ndarray  # bool: breast without the pectoral muscle
    edge_lift: np.ndarray  # mm of fat missing at the thin edge (0 under the paddle)
    pixel_mm: float


def expose(
    rng: np.random.Generator,
    anatomy: Anatomy,
    style: Style,
    difficulty: float,
    bits: int,
    device: int = 0,
) -> Exposure:
    """Counts with quantum + structured noise, response, processing and display mapping.

    device: which of the style's detectors took the image (its fixed-pattern noise); the
    four views of a study share one."""
    det, noise = style.detector, style.noise
    px = anatomy.pixel_mm
    n0 = FLUENCE_PER_MM2 * lerp(1.0, 0.3, difficulty) * float(rng.uniform(*noise.dose)) * px * px
    transmitted = np.exp(-anatomy.atten)
    counts = n0 * transmitted
    counts += np.sqrt(counts) * rng.standard_normal(counts.shape)
    expected = n0 * np.exp(-anatomy.background)
    counts = _structured_noise(rng, counts, expected, style, px, device)
    if det.mtf_sigma_mm / px > 0.2:
        counts = smooth(counts, det.mtf_sigma_mm / px)
    # Periphery equalisation: the thin edge is lifted as if it had the full thickness of fat
    # (in the log domain, i.e. a factor on the counts, whatever the response).
    lift = np.exp(-det.equalisation * MU_FAT * anatomy.edge_lift)
    signal = _response(counts / n0 * lift, det.response)
    reference = _response(np.exp(-anatomy.background) * lift, det.response)
    radius_mm, amounts = det.unsharp
    amount = float(rng.uniform(*amounts))
    if radius_mm > 0 and amount > 0:
        signal = signal + amount * (signal - smooth(signal, radius_mm / px))
    return _display(signal, reference, anatomy.tissue, det.window_spread, bits)


def _response(relative_counts: np.ndarray, response: str) -> np.ndarray:
    """Increasing with attenuation: log (A itself) or linear (1 - transmitted fraction)."""
    if response == "log":
        return -np.log(np.maximum(relative_counts, 1e-9))
    return 1.0 - relative_counts


def _structured_noise(
    rng: np.random.Generator,
    counts: np.ndarray,
    expected: np.ndarray,
    style: Style,
    px: float,
    device: int,
) -> np.ndarray:
    """Fixed-pattern gain (rows, columns and pixels of one of the style's detectors) or
    correlated 1/f noise in units of the quantum noise at the breast's median counts."""
    kind, amplitude = style.noise.structured, style.noise.structured_amplitude
    if kind == "fixed_pattern":
        pattern = np.random.default_rng([zlib.crc32(style.name.encode()), device, *counts.shape])
        rows, cols = counts.shape
        gain = (
            0.5 * pattern.standard_normal((rows, 1))
            + 0.8 * pattern.standard_normal((1, cols))
            + 0.5 * pattern.standard_normal((rows, cols))
        )
        return counts * (1.0 + amplitude * gain)
    if kind == "correlated":
        level = float(np.sqrt(np.median(expected)))
        field = power_law_field(rng, counts.shape, px, beta=1.5, f_low=0.05)
        return counts + amplitude * level * field
    return counts


def smooth(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide kernels run on a block-averaged copy (fast at full size)."""
    from scipy import ndimage

    step = int(sigma_px // 4)
    if step < 2:
        return ndimage.gaussian_filter(image, sigma_px, mode="nearest")
    rows, cols = image.shape
    r, c = rows // step * step, cols // step * step
    small = image[:r, :c].reshape(r // step, step, c // step, step).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / step, mode="nearest")
    return resample(small, (rows, cols))


def _display(
    signal: np.ndarray, reference: np.ndarray, tissue: np.ndarray, spread_factor: float, bits: int
) -> Exposure:
    """Map to stored values, anchored at the lesion-free breast's 95th percentile (a lesion
    moves neither the scaling nor the window), and choose the VOI window the same way."""
    max_value = 2**bits - 1
    region = tissue if tissue.any() else np.ones_like(tissue)
    anchor = float(np.quantile(reference[region], 0.95)) or 1.0
    background = 0.02 * max_value

    def to_values(x: np.ndarray) -> np.ndarray:
        return background + (0.6 * max_value - background) * x / anchor

    pixels = np.clip(np.rint(to_values(signal)), 0, max_value).astype(np.uint16)
    lo, hi = np.quantile(to_values(reference[region]), [0.005, 0.95])
    spread = max(hi - lo, 2.0)
    return Exposure(pixels, float(round(lo + 0.7 * spread)), float(round(spread * spread_factor)))
