"""The lesion morphologies of the phantom family: several per class, so that no single shape
stands for "malignant" (BI-RADS mass, calcification and architectural-distortion descriptors).

malignant: spiculated mass, irregular mass, architectural distortion (radiating strands
    converging on a point, no central mass), fine pleomorphic calcifications (a segmental
    cluster or fine-linear branching);
benign: round, oval, lobulated (circumscribed, 2-4 gentle lobes), lucent-centred
    (fat-containing: an oil cyst with a thin dense rim, or a lymph node with a lucent hilum
    at one side), benign calcifications (scattered round, popcorn or rim: calcifications.py).

The classic style keeps lesions.sample_lesion (its six types and its random stream).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from sgc_core.synth.calcifications import sample_calcifications
from sgc_core.synth.config import lerp
from sgc_core.synth.lesion_types import LESION_TYPES, check_lesion_types
from sgc_core.synth.lesions import (
    MU_FAT,
    MU_GLAND,
    Lesion,
    Spicule,
    _harmonics,
    _sample_mass,
    sample_position,
)

# How often each non-calcification morphology is drawn within its class.
_MASS_MIX = {
    True: (("mass_spiculated", 0.4), ("mass_irregular", 0.3), ("distortion", 0.3)),
    False: (
        ("mass_round", 0.25),
        ("mass_oval", 0.25),
        ("mass_lobulated", 0.25),
        ("mass_lucent", 0.25),
    ),
}


def family_lesion_type(rng: np.random.Generator, malignant: bool, calcification: bool) -> str:
    if calcification:
        return "calc_pleomorphic" if malignant else "calc_benign"
    names, weights = zip(*_MASS_MIX[malignant], strict=True)
    return str(rng.choice(names, p=np.array(weights) / sum(weights)))


def sample_morphology(rng: np.random.Generator, lesion_type: str, d: float) -> Lesion:
    """One lesion of ``lesion_type`` at difficulty ``d`` (sizes and contrasts widen with d
    as in the classic generator: docs/synthetic.md)."""
    check_lesion_types((lesion_type,))
    malignant, calcification = LESION_TYPES[lesion_type]
    position = sample_position(rng)
    if calcification:
        return sample_calcifications(rng, malignant, d, position)
    if lesion_type == "distortion":
        return _distortion(rng, d, position)
    if lesion_type == "mass_lobulated":
        base = _sample_mass(rng, False, d, position, kind="mass_round")
        lobes = _harmonics(rng, range(2, 5), lerp(0.14, 0.08, d), lerp(0.3, 0.2, d))
        return replace(base, lesion_type=lesion_type, harmonics=lobes, aspect=base.aspect * 1.1)
    if lesion_type == "mass_lucent":
        return _lucent(rng, d, position)
    return _sample_mass(rng, malignant, d, position, kind=lesion_type)


def _lucent(rng: np.random.Generator, d: float, position: dict) -> Lesion:
    """Oil cyst (lucent centre, thin rim) or lymph node (lucent hilum off-centre)."""
    node = bool(rng.random() < 0.5)
    base = _sample_mass(rng, False, d, position, kind="mass_oval" if node else "mass_round")
    lucency = float(rng.uniform(lerp(0.5, 0.3, d), lerp(0.9, 0.6, d))) * (MU_GLAND - MU_FAT)
    if node:
        fraction, offset = float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.5, 0.9))
    else:
        fraction, offset = float(rng.uniform(0.7, 0.88)), 0.0
    return replace(
        base,
        lesion_type="mass_lucent",
        core_fraction=fraction,
        core_offset=offset,
        core_mu=base.mu + lucency,
        variant="lymph_node" if node else "oil_cyst",
    )


def _distortion(rng: np.random.Generator, d: float, position: dict) -> Lesion:
    """Architectural distortion: thin straight-ish strands radiating from one point over
    6-25 mm, with no mass at the centre (a 0.6 mm core is only where they meet)."""
    n = int(rng.integers(round(lerp(14, 6, d)), round(lerp(30, 14, d)) + 1))
    reach = float(rng.uniform(lerp(12.0, 6.0, d), lerp(25.0, 14.0, d)))
    contrast = float(rng.uniform(lerp(0.9, 0.4, d), lerp(1.4, 0.8, d)))
    spicules = tuple(
        Spicule(
            angle=float(rng.uniform(0, 2 * math.pi)),
            length_mm=reach * float(rng.uniform(0.5, 1.0)),
            width_mm=lerp(0.8, 0.45, d) * float(rng.uniform(0.6, 1.4)),
            curvature=float(rng.normal(0, 0.15)),
            depth_mm=float(rng.uniform(2.0, 6.0)),
        )
        for _ in range(n)
    )
    return Lesion(
        lesion_type="distortion",
        malignant=True,
        radius_mm=0.6,
        angle=float(rng.uniform(0, math.pi)),
        margin_blur_mm=0.0,
        mu=contrast * (MU_GLAND - MU_FAT),
        spicules=spicules,
        **position,
    )
