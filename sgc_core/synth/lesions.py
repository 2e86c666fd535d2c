"""Lesions as extra X-ray attenuation: masses (with margins and spicules) and calcifications.

A lesion is sampled once per breast (:func:`sample_lesion`) and projected into each view
(:func:`render_lesion`), so the CC and MLO views show the same object. Everything is in
millimetres and linear attenuation coefficients (1/mm at ~28 kVp), rendered at the view's pixel
size: a sub-pixel calcification or spicule keeps its integrated attenuation (its volume), it
just spreads over a pixel, as it does on a coarse detector.

Shapes follow the BI-RADS mass and calcification descriptors: benign = circumscribed round or
oval masses, coarse round scattered calcifications; malignant = spiculated or irregular masses
with ill-defined margins, clustered fine pleomorphic calcifications in a linear/segmental
distribution. The difficulty knob makes the classes overlap (lobulated benign masses, short
spicules, small faint lesions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sgc_core.synth.config import lerp

MU_FAT = 0.045  # 1/mm, adipose tissue at ~28 kVp
MU_GLAND = 0.080  # 1/mm, fibroglandular tissue
MU_CALC = 1.2  # 1/mm, hydroxyapatite minus tissue


@dataclass(frozen=True)
class Spicule:
    angle: float  # radians, in the lesion frame
    length_mm: float
    width_mm: float
    curvature: float  # radians of bend over the length
    depth_mm: float  # extent along the X-ray beam


@dataclass(frozen=True)
class Calcification:
    dx_mm: float
    dy_mm: float
    a_mm: float  # semi-axis along `angle`
    b_mm: float  # the two other semi-axes
    angle: float
    mu: float


@dataclass(frozen=True)
class Lesion:
    lesion_type: str  # a key of LESION_TYPES
    malignant: bool
    depth: float  # 0 = chest wall, 1 = nipple
    mediolateral: float  # -1 .. 1
    craniocaudal: float  # -1 .. 1
    radius_mm: float = 0.0
    aspect: float = 1.0
    angle: float = 0.0
    harmonics: tuple[tuple[int, float, float], ...] = ()
    margin_blur_mm: float = 0.0
    mu: float = 0.0
    spicules: tuple[Spicule, ...] = field(default_factory=tuple)
    calcifications: tuple[Calcification, ...] = field(default_factory=tuple)
    # A fat-containing (lucent) centre: an inner ellipse of this fraction of the outline,
    # shifted along the long axis by core_offset x the free room, with attenuation core_mu
    # taken away (fat replacing the denser mass and the tissue around it).
    core_fraction: float = 0.0
    core_offset: float = 0.0
    core_mu: float = 0.0
    variant: str = ""  # the pattern within the type (calcifications.py, morphologies.py)

    @property
    def is_mass(self) -> bool:
        """Drawn as a density with strands (masses and architectural distortion), not as
        a cluster of calcifications."""
        return not self.lesion_type.startswith("calc")

    @property
    def extent_mm(self) -> float:
        """Radius of a circle that holds the whole lesion (for placement and the CSV)."""
        if self.is_mass:
            lobes = 1.0 + sum(abs(amp) for _, amp, _ in self.harmonics)
            reach = max((0.8 * self.radius_mm + s.length_mm for s in self.spicules), default=0.0)
            return max(self.radius_mm * self.aspect * lobes, reach)
        return max(math.hypot(c.dx_mm, c.dy_mm) + c.a_mm for c in self.calcifications)


def sample_position(rng: np.random.Generator) -> dict[str, float]:
    """Where a lesion sits in its breast, as fractions (depth from the chest wall, offsets
    across both axes); every lesion kind draws it the same way, first, so a seed keeps it."""
    return {
        "depth": float(rng.uniform(0.25, 0.8)),
        "mediolateral": float(rng.uniform(-0.6, 0.6)),
        "craniocaudal": float(rng.uniform(-0.6, 0.6)),
    }


def sample_lesion(rng: np.random.Generator, malignant: bool, mass: bool, d: float) -> Lesion:
    """Draw one lesion's shape, size, contrast and position at difficulty ``d``."""
    position = sample_position(rng)
    if mass:
        return _sample_mass(rng, malignant, d, position)
    return _sample_calcifications(rng, malignant, d, position)


def _sample_mass(
    rng: np.random.Generator, malignant: bool, d: float, position: dict, kind: str | None = None
) -> Lesion:
    """A mass of the classic types; ``kind`` forces one (None draws it as the classic
    generator did, with the same random stream)."""
    radius = float(rng.uniform(lerp(7.0, 3.5, d), lerp(15.0, 9.0, d)))
    contrast = float(rng.uniform(lerp(0.9, 0.3, d), lerp(1.5, 0.7, d)))
    angle = float(rng.uniform(0, math.pi))
    if malignant:
        spiculated = kind == "mass_spiculated" if kind else bool(rng.random() < 0.55)
        lesion_type = "mass_spiculated" if spiculated else "mass_irregular"
        amp_hi = lerp(0.30, 0.16, d)
        harmonics = _harmonics(rng, range(3, 10), amp_hi * 0.4, amp_hi)
        aspect = float(rng.uniform(1.0, 1.4))
        blur = float(rng.uniform(lerp(1.0, 0.4, d), lerp(2.0, 1.0, d)))
        if spiculated:
            n = int(rng.integers(round(lerp(12, 4, d)), round(lerp(30, 12, d)) + 1))
            reach = lerp(1.6, 0.7, d)
            width = lerp(1.0, 0.6, d)
        else:
            n = int(rng.integers(0, round(lerp(4, 2, d)) + 1))
            reach = lerp(0.8, 0.5, d)
            width = lerp(0.8, 0.5, d)
    else:
        oval = kind == "mass_oval" if kind else bool(rng.random() < 0.5)
        lesion_type = "mass_oval" if oval else "mass_round"
        aspect = float(rng.uniform(1.3, 1.8) if oval else rng.uniform(1.0, 1.12))
        # Lobulation grows with difficulty: hard benign masses look less circumscribed.
        harmonics = _harmonics(rng, range(2, 6), 0.0, 0.22 * d)
        blur = float(rng.uniform(lerp(0.1, 0.3, d), lerp(0.3, 1.0, d)))
        n = int(rng.poisson(4.0 * max(0.0, d - 0.5)))
        reach = 0.5
        width = 0.4
    spicules = tuple(
        Spicule(
            angle=float(rng.uniform(0, 2 * math.pi)),
            length_mm=float(radius * reach * rng.uniform(0.5, 1.5)),
            width_mm=float(width * rng.uniform(0.6, 1.4)),
            curvature=float(rng.normal(0, 0.3)),
            depth_mm=float(radius * rng.uniform(0.4, 0.8)),
        )
        for _ in range(n)
    )
    return Lesion(
        lesion_type=lesion_type,
        malignant=malignant,
        radius_mm=radius,
        aspect=aspect,
        angle=angle,
        harmonics=harmonics,
        margin_blur_mm=blur,
        mu=contrast * (MU_GLAND - MU_FAT),
        spicules=spicules,
        **position,
    )


def _harmonics(rng: np.random.Generator, ks: range, lo: float, hi: float) -> tuple:
    """Random boundary harmonics r(theta) = R (1 + sum a_k cos(k theta + phi_k))."""
    chosen = rng.choice(list(ks), size=min(3, len(ks)), replace=False)
    total = float(rng.uniform(lo, hi)) if hi > 0 else 0.0
    weights = rng.dirichlet(np.ones(len(chosen)))
    return tuple(
        (int(k), float(total * w), float(rng.uniform(0, 2 * math.pi)))
        for k, w in zip(chosen, weights, strict=True)
    )


def _sample_calcifications(
    rng: np.random.Generator, malignant: bool, d: float, position: dict
) -> Lesion:
    contrast = lerp(1.6, 0.7, d)
    calcs: list[Calcification] = []
    if malignant:
        n = int(rng.integers(round(lerp(10, 5, d)), round(lerp(30, 14, d)) + 1))
        spread = float(rng.uniform(lerp(3.0, 4.0, d), lerp(6.0, 8.0, d)))
        axis = float(rng.uniform(0, math.pi))
        elongation = lerp(4.0, 2.0, d)
        for _ in range(n):
            along, across = rng.uniform(-spread, spread), rng.normal(0, spread * 0.3)
            size = float(rng.uniform(lerp(0.15, 0.1, d), lerp(0.5, 0.35, d)))
            calcs.append(
                Calcification(
                    dx_mm=float(along * math.cos(axis) - across * math.sin(axis)),
                    dy_mm=float(along * math.sin(axis) + across * math.cos(axis)),
                    a_mm=size * float(rng.uniform(1.0, elongation)),
                    b_mm=size * float(rng.uniform(0.5, 1.0)),
                    angle=float(axis + rng.normal(0, 0.6)),
                    mu=MU_CALC * contrast * float(rng.uniform(0.5, 1.0)),
                )
            )
        lesion_type = "calc_pleomorphic"
    else:
        n = int(rng.integers(1, round(lerp(6, 10, d)) + 1))
        spread = float(rng.uniform(lerp(15.0, 6.0, d), lerp(30.0, 14.0, d)))
        for _ in range(n):
            r, t = spread * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            size = float(rng.uniform(lerp(0.4, 0.2, d), lerp(1.0, 0.5, d)))
            calcs.append(
                Calcification(
                    dx_mm=float(r * math.cos(t)),
                    dy_mm=float(r * math.sin(t)),
                    a_mm=size * float(rng.uniform(1.0, 1.2)),
                    b_mm=size,
                    angle=float(rng.uniform(0, math.pi)),
                    mu=MU_CALC * contrast * float(rng.uniform(0.8, 1.0)),
                )
            )
        lesion_type = "calc_benign"
    return Lesion(
        lesion_type=lesion_type, malignant=malignant, calcifications=tuple(calcs), **position
    )


# --- rendering -------------------------------------------------------------------------------


def render_lesion(
    atten: np.ndarray,
    lesion: Lesion,
    center_rc: tuple[float, float],
    pixel_mm: float,
    rotation: float,
) -> None:
    """Add the lesion's attenuation line integral to ``atten`` in place.

    rotation: extra in-plane rotation of this view's projection (the MLO is a different
    projection of the same 3D object, so its outline is turned).
    """
    if lesion.is_mass:
        _render_mass(atten, lesion, center_rc, pixel_mm, rotation)
    else:
        for calc in lesion.calcifications:
            cos, sin = math.cos(rotation), math.sin(rotation)
            dc = (calc.dx_mm * cos - calc.dy_mm * sin) / pixel_mm
            dr = (calc.dx_mm * sin + calc.dy_mm * cos) / pixel_mm
            _render_ellipsoid(
                atten, (center_rc[0] + dr, center_rc[1] + dc), calc, pixel_mm, rotation
            )


def _window(atten: np.ndarray, center: tuple[float, float], half: float):
    r0 = max(0, int(math.floor(center[0] - half)))
    r1 = min(atten.shape[0], int(math.ceil(center[0] + half)) + 1)
    c0 = max(0, int(math.floor(center[1] - half)))
    c1 = min(atten.shape[1], int(math.ceil(center[1] + half)) + 1)
    if r0 >= r1 or c0 >= c1:
        return None
    rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    return (r0, r1, c0, c1), rr, cc


def _render_mass(
    atten: np.ndarray, lesion: Lesion, center: tuple[float, float], pixel_mm: float, rotation: float
) -> None:
    from scipy import ndimage

    blur_px = lesion.margin_blur_mm / pixel_mm
    half = lesion.extent_mm / pixel_mm + 3 * blur_px + 3
    win = _window(atten, center, half)
    if win is None:
        return
    (r0, r1, c0, c1), rr, cc = win
    y = (rr - center[0]) * pixel_mm
    x = (cc - center[1]) * pixel_mm
    theta_frame = lesion.angle + rotation
    u = x * math.cos(theta_frame) + y * math.sin(theta_frame)
    v = -x * math.sin(theta_frame) + y * math.cos(theta_frame)
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    a, b = lesion.radius_mm * lesion.aspect, lesion.radius_mm
    ellipse_r = (a * b) / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    boundary = ellipse_r * (
        1.0 + sum(amp * np.cos(k * theta + phase) for k, amp, phase in lesion.harmonics)
    )
    thickness = 2.0 * lesion.radius_mm * np.sqrt(np.clip(1.0 - (r / boundary) ** 2, 0.0, None))
    patch = lesion.mu * thickness
    if lesion.core_fraction > 0:
        patch -= lesion.core_mu * _core_thickness(u, v, lesion, a, b)
    if blur_px > 0.3:
        patch = ndimage.gaussian_filter(patch, blur_px, mode="constant")
    # Spicules are fibrous strands, not part of the ill-defined margin: drawn sharp.
    for spicule in lesion.spicules:
        patch += lesion.mu * _spicule_thickness(u, v, spicule, lesion, pixel_mm)
    atten[r0:r1, c0:c1] += patch


def _core_thickness(u: np.ndarray, v: np.ndarray, lesion: Lesion, a: float, b: float):
    """Projected thickness of the lucent core (an ellipsoid inside the mass)."""
    f = lesion.core_fraction
    u0 = lesion.core_offset * a * (1.0 - f)
    inside = 1.0 - ((u - u0) / (a * f)) ** 2 - (v / (b * f)) ** 2
    return 2.0 * b * f * np.sqrt(np.clip(inside, 0.0, None))


def _spicule_thickness(
    u: np.ndarray, v: np.ndarray, spicule: Spicule, lesion: Lesion, pixel_mm: float
) -> np.ndarray:
    """Projected thickness of a tapering, slightly bent strand leaving the mass boundary.

    A spicule is a flat band of desmoplastic tissue seen edge-on over ``depth_mm`` of the
    breast's thickness; across the image its profile is a Gaussian of the band's width. The
    profile's integral is kept when the band is thinner than a pixel (sigma >= half a pixel),
    so a sub-pixel spicule still shows as a fainter line.
    """
    start = lesion.radius_mm * 0.8
    n_seg = 10
    s = np.linspace(0.0, 1.0, n_seg + 1)
    ang = spicule.angle + spicule.curvature * s
    radial = start + s * spicule.length_mm
    pu, pv = radial * np.cos(ang), radial * np.sin(ang)
    best_d2 = np.full(u.shape, np.inf)
    best_s = np.zeros(u.shape)
    for i in range(n_seg):
        du, dv = pu[i + 1] - pu[i], pv[i + 1] - pv[i]
        seg2 = du * du + dv * dv
        t = np.clip(((u - pu[i]) * du + (v - pv[i]) * dv) / seg2, 0.0, 1.0)
        d2 = (u - pu[i] - t * du) ** 2 + (v - pv[i] - t * dv) ** 2
        closer = d2 < best_d2
        best_d2 = np.where(closer, d2, best_d2)
        best_s = np.where(closer, s[i] + t / n_seg, best_s)
    half_width = 0.5 * spicule.width_mm * (1.0 - 0.8 * best_s)
    sigma = np.maximum(half_width / 1.2, 0.5 * pixel_mm)
    integral = spicule.depth_mm * 2.0 * half_width
    return integral / (math.sqrt(2 * math.pi) * sigma) * np.exp(-best_d2 / (2 * sigma**2))


def _render_ellipsoid(
    atten: np.ndarray,
    center: tuple[float, float],
    calc: Calcification,
    pixel_mm: float,
    rotation: float,
) -> None:
    """An ellipsoid's projected thickness, supersampled so sub-pixel calcs keep their volume."""
    b_px = calc.b_mm / pixel_mm
    ss = int(min(16, max(1, math.ceil(3.0 / max(b_px, 1e-3)))))
    half = int(math.ceil(calc.a_mm / pixel_mm)) + 1
    rc0 = (int(round(center[0])), int(round(center[1])))
    r0, r1 = max(0, rc0[0] - half), min(atten.shape[0], rc0[0] + half + 1)
    c0, c1 = max(0, rc0[1] - half), min(atten.shape[1], rc0[1] + half + 1)
    if r0 >= r1 or c0 >= c1:
        return
    offsets = (np.arange(ss) + 0.5) / ss - 0.5
    rows = (np.arange(r0, r1)[:, None] + offsets[None, :]).ravel()
    cols = (np.arange(c0, c1)[:, None] + offsets[None, :]).ravel()
    y = (rows[:, None] - center[0]) * pixel_mm
    x = (cols[None, :] - center[1]) * pixel_mm
    ang = calc.angle + rotation
    u = x * math.cos(ang) + y * math.sin(ang)
    v = -x * math.sin(ang) + y * math.cos(ang)
    inside = 1.0 - (u / calc.a_mm) ** 2 - (v / calc.b_mm) ** 2
    thickness = 2.0 * calc.b_mm * np.sqrt(np.clip(inside, 0.0, None))
    fine = calc.mu * thickness
    coarse = fine.reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3))
    atten[r0:r1, c0:c1] += coarse
