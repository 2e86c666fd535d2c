"""One breast, one view: anatomy -> X-ray attenuation -> quantum-limited detector -> pixels.

The image formation is a simple physical chain, so the pictures behave like mammograms:

1. Outline: a compressed breast is a half-ellipse against the chest wall (CC) or a taller,
   teardrop-like shape with the pectoral muscle in the upper corner (MLO). Its thickness is
   constant under the paddle and falls off over a rounded edge; the skin (1-2 mm, denser than
   fat) is crossed tangentially at the edge, which draws the skin line.
2. Parenchyma: the fibroglandular fraction is the style's texture field (texture.py: a
   power-law random field in the classic style) passed through a soft threshold whose offset sets the BI-RADS density (A-D), capped at the
   density's largest fraction along a ray, weighted by an envelope (subcutaneous and
   retromammary fat carry none).
3. Attenuation line integral A = mu_fat*t + (mu_gland-mu_fat)*t*g + skin + muscle + lesion.
4. Detector: Poisson counts N ~ Poisson(N0 exp(-A)) with N0 = fluence x pixel area (quantum
   noise at the real dose per pixel), log-converted, thickness-equalised at the periphery
   (as "for presentation" processing does) and mapped to 12-14 bit values: bright = dense.
   The family styles replace this step by detector.py (their noise, response, processing).
5. A right breast is mirrored into the standard hanging (chest wall right) where the style
   does so; the lesion's centre and box are mirrored with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sgc_core.synth.config import SynthConfig, lerp
from sgc_core.synth.detector import FLUENCE_PER_MM2, Anatomy, Exposure, expose
from sgc_core.synth.lesions import MU_FAT, MU_GLAND, Lesion, render_lesion
from sgc_core.synth.styles import Style, get_style
from sgc_core.synth.texture import texture_field

MU_SKIN = 0.085
MU_MUSCLE = 0.070
DENSITY_OFFSETS = {"A": -1.8, "B": -0.8, "C": 0.1, "D": 1.0}
# The largest fibroglandular fraction along one ray, per density. A ray crosses the whole
# compressed breast, so its glandular fraction is an average: even a dense breast is rarely
# all gland through 50 mm, and a fatty one (A, < 25 % gland by volume) never approaches it.
# Without this cap fatty breasts had full-thickness gland blobs as bright as any mass, and no
# lesion was visible in them (docs/synthetic.md).
GLAND_MAX = {"A": 0.3, "B": 0.5, "C": 0.75, "D": 0.95}


@dataclass(frozen=True)
class Breast:
    """One breast's anatomy, shared by its CC and MLO views."""

    laterality: str  # "L" | "R"
    thickness_mm: float
    depth_mm: float  # chest wall to nipple (CC)
    half_height_mm: float  # CC half-extent across the nipple axis
    density: str  # BI-RADS density A-D
    beta: float  # power-law exponent of the texture
    outline: tuple[tuple[int, float, float], ...]
    lesion: Lesion | None

    @property
    def finding(self) -> str:
        if self.lesion is None:
            return "normal"
        return "malignant" if self.lesion.malignant else "benign"


@dataclass(frozen=True)
class RenderedView:
    """Presentation values (MONOCHROME2 sense) and where the lesion landed."""

    pixels: np.ndarray  # uint16, bright = dense
    window_center: float
    window_width: float
    lesion_center: tuple[int, int] | None  # (row, col) in this image
    lesion_radius_px: float
    # (ymin, xmin, ymax, xmax), inclusive: the tight box of the lesion as drawn in this image
    lesion_box: tuple[int, int, int, int] | None = None


def sample_density(rng: np.random.Generator, difficulty: float) -> str:
    """Dense breasts hide lesions; the hard end of the knob makes them more common."""
    easy = np.array([0.45, 0.35, 0.15, 0.05])
    hard = np.array([0.10, 0.25, 0.40, 0.25])
    p = easy + (hard - easy) * difficulty
    return str(rng.choice(["A", "B", "C", "D"], p=p / p.sum()))


def sample_breast(
    rng: np.random.Generator, laterality: str, lesion: Lesion | None, config: SynthConfig
) -> Breast:
    return Breast(
        laterality=laterality,
        thickness_mm=float(rng.uniform(35.0, 70.0)),
        depth_mm=float(rng.uniform(85.0, 140.0)),
        half_height_mm=float(rng.uniform(65.0, 95.0)),
        density=sample_density(rng, config.difficulty),
        beta=float(rng.uniform(2.6, 3.4)),
        outline=tuple(
            (k, float(rng.uniform(0.0, 0.03)), float(rng.uniform(0, 2 * math.pi)))
            for k in (2, 3, 4)
        ),
        lesion=lesion,
    )


def render_view(
    rng: np.random.Generator,
    breast: Breast,
    view: str,
    config: SynthConfig,
    style: Style | None = None,
    device: int = 0,
) -> RenderedView:
    """Render ``view`` ("CC" | "MLO") of ``breast`` in ``style`` (default: the config's
    style, which must then be a single style) on the style's detector ``device``, as
    presentation values.

    The steps draw from ``rng`` in a fixed order (outline, texture, detector), so a seed
    gives the same pixels."""
    style = style or get_style(config.style)
    config = config.for_style(style)
    px = config.spacing_mm(style)
    outline = _outline(rng, breast, view, config.rows, config.cols, px)
    nipple = (outline.yc, outline.depth_px)
    field = texture_field(style.texture, rng, (config.rows, config.cols), px, breast.beta, nipple)
    atten = _attenuation(breast, outline, field)
    # The family detectors see the anatomy without the lesion as well (the classic one not).
    background = atten.copy() if style.name != "classic" else atten
    placed = _place_lesion(atten, breast.lesion, view, outline, px)
    exposure = _expose_view(rng, breast, outline, atten, background, px, config, style, device)
    mirror = breast.laterality == "R" and style.header.hanging
    return _hang(exposure, placed, mirror, config.cols)


def _attenuation(breast: Breast, outline: _Outline, field: np.ndarray) -> np.ndarray:
    """Step 2-3: the glandular fraction from the texture field, then the attenuation line
    integral of fat, gland, skin and muscle (no lesion yet)."""
    cols = field.shape[1]
    cc = np.arange(cols, dtype=np.float64)[None, :]
    rho, muscle = outline.rho, outline.muscle
    along = cc / outline.depth_px
    envelope = np.clip((1.0 - rho) / 0.2, 0.0, 1.0) * np.clip((along - 0.03) / 0.2, 0.0, 1.0)
    soft = 1.0 / (1.0 + np.exp(-(field + DENSITY_OFFSETS[breast.density]) / 0.7))
    gland = GLAND_MAX[breast.density] * envelope * soft
    gland *= 1.0 - np.clip(muscle, 0.0, 1.0)
    inner = outline.inner
    return (
        MU_FAT * inner
        + (MU_GLAND - MU_FAT) * inner * gland
        + MU_SKIN * outline.skin_path
        + (MU_MUSCLE - MU_FAT) * inner * muscle * (1.0 + 0.05 * field)
    )


@dataclass(frozen=True)
class _Placed:
    """Where a lesion was drawn (before the hanging mirror): centre, enclosing radius, box."""

    center: tuple[float, float] | None = None
    radius: float = 0.0
    box: tuple[int, int, int, int] | None = None


def _place_lesion(
    atten: np.ndarray, lesion: Lesion | None, view: str, outline: _Outline, px: float
) -> _Placed:
    """Draw ``lesion`` into ``atten`` (in place) and say where it went."""
    if lesion is None:
        return _Placed()
    center = _lesion_center(
        lesion, view, outline.yc, outline.depth_px, outline.half_px, outline.muscle, px
    )
    rotation = 0.0 if view == "CC" else math.radians(35.0)
    render_lesion(atten, lesion, center, px, rotation)
    # The circle holds the outline and the ill-defined margin's blur (2 sigma).
    radius = (lesion.extent_mm + 2 * lesion.margin_blur_mm) / px
    return _Placed(center, radius, _lesion_box(lesion, center, px, rotation, atten.shape))


def _expose_view(
    rng: np.random.Generator,
    breast: Breast,
    outline: _Outline,
    atten: np.ndarray,
    background: np.ndarray,
    px: float,
    config: SynthConfig,
    style: Style,
    device: int,
) -> Exposure:
    """Step 4: the classic detector or the style's (detector.py), with the edge lift that
    thickness equalisation undoes."""
    inside = outline.thickness > 0
    edge_lift = np.where(inside, breast.thickness_mm - outline.thickness, 0.0)
    tissue = inside & (outline.muscle < 0.5)
    if style.name == "classic":
        return _classic_detector(rng, atten, tissue, edge_lift, px, config)
    anatomy = Anatomy(atten, background, inside, tissue, edge_lift, px)
    return expose(rng, anatomy, style, config.difficulty, style.header.bits_stored, device)


def _hang(exposure: Exposure, placed: _Placed, mirror: bool, cols: int) -> RenderedView:
    """Step 5: mirror a right breast into the hanging where the style does, the lesion's
    centre and box with it; the centre is rounded to a pixel."""
    pixels, center, box = exposure.pixels, placed.center, placed.box
    if mirror:
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        if center is not None:
            center = (center[0], cols - 1 - center[1])
        if box is not None:
            box = (box[0], cols - 1 - box[3], box[2], cols - 1 - box[1])
    if center is not None:
        center = (int(round(center[0])), int(round(center[1])))
    return RenderedView(
        pixels, exposure.window_center, exposure.window_width, center, placed.radius, box
    )


def _lesion_box(
    lesion: Lesion, center: tuple[float, float], px: float, rotation: float, shape
) -> tuple[int, int, int, int] | None:
    """The inclusive (ymin, xmin, ymax, xmax) box of the pixels where the lesion adds or
    takes away at least 5 % of its strongest attenuation (drawn on its own, so the image's
    random stream is untouched)."""
    footprint = np.zeros(shape)
    render_lesion(footprint, lesion, center, px, rotation)
    strength = np.abs(footprint)
    peak = float(strength.max())
    if peak <= 0:
        return None
    rows, cols = np.nonzero(strength >= 0.05 * peak)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


@dataclass(frozen=True)
class _Outline:
    yc: float  # row of the nipple axis
    depth_px: float
    half_px: float
    rho: np.ndarray  # 0 at the chest wall centre, 1 at the skin
    muscle: np.ndarray  # pectoral muscle fraction (0 in the CC)
    thickness: np.ndarray  # compressed thickness (mm)
    inner: np.ndarray  # thickness under the skin (mm)
    skin_path: np.ndarray  # path length through the skin (mm)


def _outline(
    rng: np.random.Generator, breast: Breast, view: str, rows: int, cols: int, px: float
) -> _Outline:
    """The compressed breast's shape, thickness and skin in this view (chest wall left)."""
    rr = np.arange(rows, dtype=np.float64)[:, None]
    cc = np.arange(cols, dtype=np.float64)[None, :]
    depth_px = min(breast.depth_mm / px, cols * 0.93)
    if view == "CC":
        yc = rows * float(rng.uniform(0.46, 0.54))
        half_px = min(breast.half_height_mm / px, rows * 0.47)
    else:
        depth_px = min(depth_px * 1.05, cols * 0.95)
        yc = rows * float(rng.uniform(0.52, 0.6))
        half_px = rows * 0.62
    theta = np.arctan2((rr - yc) / half_px, cc / depth_px)
    wobble = 1.0 + sum(a * np.cos(k * theta + ph) for k, a, ph in breast.outline)
    rho = np.sqrt((cc / depth_px) ** 2 + ((rr - yc) / half_px) ** 2) / wobble

    muscle = np.zeros((rows, cols))
    if view == "MLO":
        muscle = _pectoral(rng, rows, cols, px)
        rho = np.where(muscle > 0.5, np.minimum(rho, 0.5), rho)

    edge_mm = (1.0 - rho) * min(depth_px, half_px) * px
    thickness = _edge_profile(edge_mm, breast.thickness_mm)
    skin_mm = float(rng.uniform(1.0, 2.0))
    inner = _edge_profile(edge_mm - skin_mm, breast.thickness_mm - 2 * skin_mm)
    skin_path = np.clip(thickness - inner, 0.0, None)
    return _Outline(yc, depth_px, half_px, rho, muscle, thickness, inner, skin_path)


def _classic_detector(
    rng: np.random.Generator,
    atten: np.ndarray,
    tissue: np.ndarray,
    edge_lift: np.ndarray,
    px: float,
    config: SynthConfig,
) -> Exposure:
    """The classic style's detector (unchanged): Poisson counts, log, periphery
    equalisation, display scaling and window from the breast's own histogram."""
    max_value = 2**config.bits_stored - 1
    n0 = FLUENCE_PER_MM2 * lerp(1.0, 0.3, config.difficulty) * px * px
    counts = rng.poisson(n0 * np.exp(-atten))
    log_signal = np.log(n0 / np.maximum(counts, 1.0))
    # Periphery equalisation: lift the thin edge as if it had the full thickness of fat.
    log_signal += 0.8 * MU_FAT * edge_lift
    # Display scaling and VOI window from the breast's histogram, as "for presentation"
    # processing does, anchored at its 95th percentile: a lesion covers 1-5 % of the breast,
    # so it does not move the anchor, and the rest of the image is the same with or without
    # it (no global-contrast shortcut for a classifier to learn). The headroom above the
    # anchor keeps dense lesions unclipped.
    reference = float(np.quantile(log_signal[tissue], 0.95)) if tissue.any() else 1.0
    background = 0.02 * max_value
    values = background + (0.6 * max_value - background) * log_signal / reference
    pixels = np.clip(np.rint(values), 0, max_value).astype(np.uint16)

    breast_values = pixels[tissue] if tissue.any() else pixels.ravel()
    lo, hi = np.quantile(breast_values, [0.005, 0.95])
    spread = max(hi - lo, 2.0)
    return Exposure(pixels, float(round(lo + 0.7 * spread)), float(round(spread * 1.6)))


def _edge_profile(edge_mm: np.ndarray, thickness_mm: float) -> np.ndarray:
    """Compressed thickness vs distance from the skin: a rounded (semicircular) edge."""
    radius = thickness_mm / 2.0
    x = np.clip(1.0 - edge_mm / radius, 0.0, 1.0)
    return np.where(edge_mm > 0, thickness_mm * np.sqrt(1.0 - x * x), 0.0)


def _pectoral(rng: np.random.Generator, rows: int, cols: int, px: float) -> np.ndarray:
    """Soft mask of the pectoral muscle: a convex triangle in the upper chest-wall corner."""
    width = cols * float(rng.uniform(0.25, 0.42))
    height = rows * float(rng.uniform(0.45, 0.75))
    bulge = float(rng.uniform(0.0, 0.12)) * width
    r = np.arange(rows, dtype=np.float64)[:, None]
    c = np.arange(cols, dtype=np.float64)[None, :]
    frac = np.clip(r / height, 0.0, 1.0)
    boundary = width * (1.0 - frac) + bulge * np.sin(math.pi * frac)
    softness = max(1.0 / px, 1.0)
    return 1.0 / (1.0 + np.exp((c - boundary) / softness)) * (r < height)


def _lesion_center(
    lesion: Lesion,
    view: str,
    yc: float,
    depth_px: float,
    half_px: float,
    muscle: np.ndarray,
    px: float,
) -> tuple[float, float]:
    """The 3D position (depth, mediolateral, craniocaudal) projected into this view."""
    col = lesion.depth * depth_px * 0.85
    across = (
        lesion.mediolateral if view == "CC" else (lesion.mediolateral + lesion.craniocaudal) / 2
    )
    local_half = half_px * math.sqrt(max(0.0, 1.0 - (col / depth_px) ** 2))
    row = yc + across * local_half * 0.7
    row = float(np.clip(row, 0, muscle.shape[0] - 1))
    if view == "MLO":
        margin = lesion.extent_mm / px * 0.5
        muscle_cols = np.flatnonzero(muscle[int(row)] > 0.5)
        if muscle_cols.size and col < muscle_cols[-1] + margin:
            col = min(muscle_cols[-1] + margin, depth_px * 0.85)
    return row, float(col)
