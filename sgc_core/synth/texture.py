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


# --- the other texture models of the phantom family (styles.py) ------------------------------


def texture_field(
    kind: str,
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_mm: float,
    beta: float,
    nipple_rc: tuple[float, float],
) -> np.ndarray:
    """The parenchyma driver field of one texture model (zero mean, unit variance).

    Every model is elongated along the nipple axis (columns) and drawn on a grid no finer
    than ~0.2 mm (the structures are larger), then resampled to the image.
    """
    if kind == "gaussian":
        return power_law_field(rng, shape, pixel_mm, beta=beta, anisotropy=1.6)
    work_mm = max(pixel_mm, 0.2)
    work = (
        max(8, round(shape[0] * pixel_mm / work_mm)),
        max(8, round(shape[1] * pixel_mm / work_mm)),
    )
    scale = work[0] / shape[0]
    nipple = (nipple_rc[0] * scale, nipple_rc[1] * scale)
    if kind == "lumpy":
        field = lumpy_field(rng, work, work_mm)
    elif kind == "ligament":
        field = ligament_field(rng, work, work_mm)
    elif kind == "ducts":
        field = duct_field(rng, work, work_mm, nipple)
    elif kind == "strands":
        field = strand_field(rng, work, work_mm, nipple)
    else:
        raise ValueError(f"unknown texture model {kind!r}")
    return _normalised(resample(field, shape))


def _normalised(field: np.ndarray) -> np.ndarray:
    field = field - field.mean()
    std = field.std()
    return field / std if std > 0 else field


def resample(field: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling to exactly ``shape`` (the models are smooth at the work grid)."""
    if field.shape == tuple(shape):
        return field
    from scipy import ndimage

    rr = (np.arange(shape[0]) + 0.5) * field.shape[0] / shape[0] - 0.5
    cc = (np.arange(shape[1]) + 0.5) * field.shape[1] / shape[1] - 0.5
    grid = np.meshgrid(rr, cc, indexing="ij")
    return ndimage.map_coordinates(field, grid, order=1, mode="nearest")


def _splat(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, weights) -> np.ndarray:
    """Point masses at (rows, cols) (pixels; those outside are dropped) as an image."""
    image = np.zeros(shape)
    r, c = np.rint(rows).astype(np.int64), np.rint(cols).astype(np.int64)
    keep = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    np.add.at(image, (r[keep], c[keep]), np.broadcast_to(weights, r.shape)[keep])
    return image


def _blurred(image: np.ndarray, pixel_mm: float, sigma_mm: float, anisotropy: float):
    """``image`` convolved with a Gaussian (sigma_mm across, x anisotropy along columns)."""
    fy = np.fft.fftfreq(image.shape[0], d=pixel_mm)[:, None]
    fx = np.fft.rfftfreq(image.shape[1], d=pixel_mm)[None, :]
    transfer = np.exp(-2 * np.pi**2 * sigma_mm**2 * (fy**2 + (anisotropy * fx) ** 2))
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=image.shape)


def lumpy_field(rng: np.random.Generator, shape: tuple[int, int], pixel_mm: float) -> np.ndarray:
    """Clustered lumpy background (Bochud et al. 1999): clusters of Gaussian lumps at four
    scales, the larger ones stronger, so the spectrum falls roughly as a power law while the
    texture is made of distinct blobs rather than a Gaussian field's ripples."""
    rows, cols = shape
    area = rows * cols * pixel_mm**2
    total = np.zeros(shape)
    for sigma_mm, weight in ((1.0, 0.1), (2.0, 0.35), (4.0, 1.0), (8.0, 1.6)):
        n_clusters = int(rng.poisson(area / (5.0 * sigma_mm) ** 2)) + 1
        centres = rng.uniform((0, 0), (rows, cols), size=(n_clusters, 2))
        per = rng.poisson(8.0, size=n_clusters) + 1
        spread = 2.5 * sigma_mm / pixel_mm
        lumps = np.repeat(centres, per, axis=0) + rng.normal(0, spread, size=(per.sum(), 2))
        amps = weight * rng.exponential(1.0, size=len(lumps))
        impulses = _splat(shape, lumps[:, 0], lumps[:, 1], amps)
        total += _blurred(impulses, pixel_mm, sigma_mm, anisotropy=float(rng.uniform(1.2, 1.8)))
    # Lumps pile up where clusters overlap; the log keeps those piles from saturating.
    return np.log1p(np.maximum(total, 0.0) / (total.mean() + 1e-12))


def ligament_field(rng: np.random.Generator, shape: tuple[int, int], pixel_mm: float) -> np.ndarray:
    """Cooper's ligaments: a Voronoi network of thin bright walls around fat lobules.

    Seeds are fat lobule centres; a pixel's distance to its nearest and second-nearest seed
    gives its distance to the cell wall. Cells differ in glandular content (a level per
    cell) and a smooth 1/f field adds the large-scale density variation.
    """
    from scipy.spatial import cKDTree

    rows, cols = shape
    aniso = float(rng.uniform(1.3, 1.8))
    cell_mm = float(rng.uniform(5.0, 9.0))
    h, w = rows * pixel_mm, cols * pixel_mm * 1.0 / aniso
    n = int(rng.poisson(h * w / cell_mm**2)) + 3
    seeds = rng.uniform((0, 0), (h, w), size=(n, 2))
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float64)
    points = np.stack([rr.ravel() * pixel_mm, cc.ravel() * pixel_mm / aniso], axis=1)
    dist, idx = cKDTree(seeds).query(points, k=2)
    wall = (dist[:, 1] - dist[:, 0]).reshape(shape) / 2.0
    width = float(rng.uniform(0.2, 0.45))
    lines = np.exp(-(wall**2) / (2 * width**2))
    level = rng.standard_normal(n)[idx[:, 0]].reshape(shape)
    patches = _blurred(level, pixel_mm, 1.0, anisotropy=1.0)
    smooth = power_law_field(rng, shape, pixel_mm, beta=3.2, anisotropy=aniso)
    return 1.3 * lines + 0.5 * patches + 0.6 * smooth


def duct_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_mm: float,
    nipple_rc: tuple[float, float],
) -> np.ndarray:
    """A duct tree: trunks leave the nipple toward the chest wall (column 0), branch and end
    in lobules (terminal duct lobular units), over a faint 1/f background."""
    points, lobules = _duct_tree(rng, nipple_rc, pixel_mm)
    ducts = _splat(shape, points[:, 0], points[:, 1], points[:, 2])
    ducts = _saturated(_blurred(ducts, pixel_mm, 0.35, anisotropy=1.0))
    buds = _splat(shape, lobules[:, 0], lobules[:, 1], lobules[:, 2])
    buds = _saturated(_blurred(buds, pixel_mm, float(rng.uniform(0.8, 1.4)), anisotropy=1.0))
    smooth = power_law_field(rng, shape, pixel_mm, beta=3.0, anisotropy=1.5)
    return 1.5 * ducts + 2.0 * buds + 0.5 * smooth


def _saturated(image: np.ndarray) -> np.ndarray:
    """Overlapping structures add up to at most ~1 (the tissue cannot be denser than gland)."""
    scale = float(np.quantile(image, 0.995))
    return np.tanh(image / scale) if scale > 0 else image


def _duct_tree(rng: np.random.Generator, nipple_rc: tuple[float, float], pixel_mm: float):
    """Points along every duct segment (row, col, weight) and lobule centres (row, col, w)."""
    stack = [
        (nipple_rc[0], nipple_rc[1], np.pi + a, float(rng.uniform(1.0, 1.6)), 0)
        for a in rng.uniform(-1.1, 1.1, size=int(rng.integers(6, 12)))
    ]
    points, lobules = [], []
    while stack:
        r, c, angle, width, gen = stack.pop()
        length = float(rng.uniform(10.0, 22.0)) * 0.8**gen / pixel_mm
        angle += float(rng.normal(0, 0.2))
        r1, c1 = r + length * np.sin(angle), c + length * np.cos(angle)
        n = max(2, int(length / 0.5))
        t = np.linspace(0.0, 1.0, n)
        points.append(np.stack([r + t * (r1 - r), c + t * (c1 - c), np.full(n, width**2)], 1))
        if gen >= 6 or c1 < 0:
            n_acini = int(rng.integers(3, 9))
            spread = float(rng.uniform(0.8, 2.0)) / pixel_mm
            centre = np.array([r1, c1]) + rng.normal(0, spread, size=(n_acini, 2))
            lobules.append(np.column_stack([centre, rng.uniform(0.5, 1.0, n_acini)]))
            continue
        branches = 2 if rng.random() < 0.75 else 1
        for k in range(branches):
            turn = float(rng.uniform(0.25, 0.7)) * (1 if k == 0 else -1) if branches == 2 else 0
            stack.append((r1, c1, angle + turn, width * 0.78, gen + 1))
    empty = np.zeros((0, 3))
    return (
        np.concatenate(points) if points else empty,
        np.concatenate(lobules) if lobules else empty,
    )


def strand_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_mm: float,
    nipple_rc: tuple[float, float],
    n_orientations: int = 8,
) -> np.ndarray:
    """Fibrous strands converging on the nipple: white noise filtered by long, thin
    Gaussians at ``n_orientations`` angles, each pixel taking the filters that point at the
    nipple, over a 1/f field. Normal tissue then has line-like structure, as spiculated
    masses and distortions do, which a lesion model must learn to tell apart."""
    rows, cols = shape
    spectrum = np.fft.rfft2(rng.standard_normal(shape))
    fy = np.fft.fftfreq(rows, d=pixel_mm)[:, None]
    fx = np.fft.rfftfreq(cols, d=pixel_mm)[None, :]
    along, across = float(rng.uniform(2.5, 5.0)), float(rng.uniform(0.25, 0.5))
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float64)
    direction = np.arctan2(rr - nipple_rc[0], cc - nipple_rc[1])
    total, weights = np.zeros(shape), np.zeros(shape)
    step = np.pi / n_orientations
    for k in range(n_orientations):
        theta = k * step
        f_along = fx * np.cos(theta) + fy * np.sin(theta)
        f_across = -fx * np.sin(theta) + fy * np.cos(theta)
        transfer = np.exp(-2 * np.pi**2 * ((along * f_along) ** 2 + (across * f_across) ** 2))
        band = np.fft.irfft2(spectrum * transfer, s=shape)
        delta = (direction - theta + np.pi / 2) % np.pi - np.pi / 2
        weight = np.exp(-((delta / step) ** 2))
        total += weight * band
        weights += weight
    strands = _normalised(total / weights)
    return strands + 0.8 * power_law_field(rng, shape, pixel_mm, beta=3.0, anisotropy=1.5)
