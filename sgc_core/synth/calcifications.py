"""Calcification clusters of the phantom family: more than one pattern per class.

benign (calc_benign): scattered round (the classic pattern), popcorn (1-3 coarse clumps of
    a degenerating fibroadenoma), rim / eggshell (a thin shell of tiny calcifications around
    an oil cyst);
malignant (calc_pleomorphic): segmental pleomorphic (the classic pattern), fine-linear
    branching (thin rods cast along a branching duct).

Positions are relative to the cluster's centre of mass, so the lesion centre written to
labels.csv lies among the calcifications, not beside them.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from sgc_core.synth.config import lerp
from sgc_core.synth.lesions import MU_CALC, Calcification, Lesion, _sample_calcifications

BENIGN_VARIANTS = (("scattered", 0.5), ("popcorn", 0.25), ("rim", 0.25))
MALIGNANT_VARIANTS = (("segmental", 0.6), ("branching", 0.4))


def sample_calcifications(
    rng: np.random.Generator, malignant: bool, d: float, position: dict
) -> Lesion:
    """One cluster of a pattern drawn for its class, at difficulty ``d``."""
    names, weights = zip(*(MALIGNANT_VARIANTS if malignant else BENIGN_VARIANTS), strict=True)
    variant = str(rng.choice(names, p=np.array(weights) / sum(weights)))
    contrast = lerp(1.6, 0.7, d)
    if variant == "popcorn":
        calcs = _popcorn(rng, d, contrast)
    elif variant == "rim":
        calcs = _rim(rng, d, contrast)
    elif variant == "branching":
        calcs = _branching(rng, d, contrast)
    else:
        classic = _sample_calcifications(rng, malignant, d, position)
        calcs = list(classic.calcifications)
    return Lesion(
        lesion_type="calc_pleomorphic" if malignant else "calc_benign",
        malignant=malignant,
        calcifications=_centred(calcs),
        variant=variant,
        **position,
    )


def _centred(calcs: list[Calcification]) -> tuple[Calcification, ...]:
    """Shift the cluster so that its volume-weighted centre is the origin."""
    weights = np.array([c.a_mm * c.b_mm * c.b_mm * c.mu for c in calcs])
    cx = float(np.average([c.dx_mm for c in calcs], weights=weights))
    cy = float(np.average([c.dy_mm for c in calcs], weights=weights))
    return tuple(replace(c, dx_mm=c.dx_mm - cx, dy_mm=c.dy_mm - cy) for c in calcs)


def _popcorn(rng: np.random.Generator, d: float, contrast: float) -> list[Calcification]:
    """1-3 coarse clumps (2-5 mm) of overlapping irregular grains, within 10 mm."""
    calcs = []
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.normal(0, 3.0, size=2)
        clump = float(rng.uniform(lerp(1.2, 0.8, d), lerp(2.5, 1.6, d)))
        for _ in range(int(rng.integers(5, 10))):
            r, t = clump * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            size = float(rng.uniform(0.4, 0.9)) * clump / 2
            calcs.append(
                Calcification(
                    dx_mm=float(cx + r * math.cos(t)),
                    dy_mm=float(cy + r * math.sin(t)),
                    a_mm=size * float(rng.uniform(1.0, 1.6)),
                    b_mm=size,
                    angle=float(rng.uniform(0, math.pi)),
                    mu=MU_CALC * contrast * float(rng.uniform(0.7, 1.0)),
                )
            )
    return calcs


def _rim(rng: np.random.Generator, d: float, contrast: float) -> list[Calcification]:
    """A thin shell: tiny calcifications along a 2-6 mm circle, lying along it."""
    radius = float(rng.uniform(lerp(3.0, 2.0, d), lerp(6.0, 4.0, d)))
    n = int(rng.integers(round(lerp(24, 12, d)), round(lerp(40, 24, d)) + 1))
    calcs = []
    for t in rng.uniform(0, 2 * math.pi, size=n):
        r = radius * float(rng.uniform(0.95, 1.05))
        calcs.append(
            Calcification(
                dx_mm=r * math.cos(t),
                dy_mm=r * math.sin(t),
                a_mm=float(rng.uniform(0.3, 0.7)),
                b_mm=float(rng.uniform(lerp(0.15, 0.1, d), lerp(0.3, 0.2, d))),
                angle=float(t + math.pi / 2),
                mu=MU_CALC * contrast * float(rng.uniform(0.6, 1.0)),
            )
        )
    return calcs


def _branching(rng: np.random.Generator, d: float, contrast: float) -> list[Calcification]:
    """Thin rods cast along a duct that branches once or twice over 6-15 mm."""
    segments = []
    stack = [(0.0, 0.0, float(rng.uniform(0, 2 * math.pi)), 0)]
    while stack:
        x, y, angle, gen = stack.pop()
        length = float(rng.uniform(3.0, 6.0))
        x1, y1 = x + length * math.cos(angle), y + length * math.sin(angle)
        segments.append((x, y, x1, y1, angle))
        if gen < 2 and rng.random() < 0.6:
            stack.append((x1, y1, angle + float(rng.uniform(0.3, 0.8)), gen + 1))
        if gen < 2:
            stack.append((x1, y1, angle - float(rng.uniform(0.0, 0.4)), gen + 1))
    calcs = []
    for x, y, x1, y1, angle in segments:
        n = int(rng.integers(round(lerp(5, 2, d)), round(lerp(9, 5, d)) + 1))
        for s in rng.uniform(0, 1, size=n):
            calcs.append(
                Calcification(
                    dx_mm=float(x + s * (x1 - x)),
                    dy_mm=float(y + s * (y1 - y)),
                    a_mm=float(rng.uniform(lerp(0.4, 0.25, d), lerp(0.9, 0.6, d))),
                    b_mm=float(rng.uniform(lerp(0.1, 0.07, d), lerp(0.2, 0.14, d))),
                    angle=float(angle + rng.normal(0, 0.15)),
                    mu=MU_CALC * contrast * float(rng.uniform(0.5, 1.0)),
                )
            )
    return calcs
