"""Power-law (1/f^beta) noise: the standard statistical model of mammographic parenchyma.

Burgess et al. (Med. Phys. 2001) measured the power spectrum of mammographic backgrounds as
P(f) ~ 1/f^beta with beta ~ 3 (range ~2-4). Filtering white noise by f^(-beta/2) in the
Fourier domain gives a Gaussian random field with exactly that spectrum. A mild anisotropy
stretches structures along the nipple axis (ducts and ligaments converge on the nipple).
"""

from __future__ import annotations

import numpy as np


def power_law_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_mm: float,
    beta: float = 3.0,
    f_low: float = 0.02,
    anisotropy: float = 1.0,
) -> np.ndarray:
    """A zero-mean, unit-variance field with power spectrum ~ 1/f^beta (f in cycles/mm).

    f_low (cycles/mm) keeps the spectrum finite at f = 0: structures larger than 1/f_low mm
    do not grow further. anisotropy > 1 elongates structures along the columns (the nipple
    axis of a view whose chest wall is on the left).
    """
    rows, cols = shape
    fy = np.fft.fftfreq(rows, d=pixel_mm)[:, None]
    fx = np.fft.rfftfreq(cols, d=pixel_mm)[None, :]
    f = np.sqrt((fx / anisotropy) ** 2 + fy**2)
    amplitude = (f * f + f_low * f_low) ** (-beta / 4.0)
    amplitude[0, 0] = 0.0
    white = rng.standard_normal((rows, cols))
    field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(rows, cols))
    std = field.std()
    return field / std if std > 0 else field
