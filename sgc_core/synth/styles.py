"""Named phantom styles: what differs between "vendors" so a model cannot learn one generator.

A style fixes four things that a real mammography system fixes for every image it writes:

- the tissue texture model (texture.py: Gaussian 1/f field, clustered lumps, Cooper's
  ligament network, fibrous strands converging on the nipple, duct tree with lobules);
- the noise model (quantum noise at a dose range, plus structured noise: detector fixed
  pattern or correlated 1/f electronic noise);
- the detector response and image processing (log or linear response, Gaussian MTF blur,
  periphery equalisation, unsharp-mask "for presentation" processing);
- the header convention (MONOCHROME1/2, window attributes or a VOI LUT Sequence, 12/14/16
  BitsStored, For Presentation or For Processing, field of view = pixel spacing, whether a
  right breast is stored mirrored into the standard hanging).

``classic`` is the generator as it was before styles existed (byte-identical output, the
original six lesion types); it is the Python API's default so that the bundled model's data
and the tests written against it stay reproducible. It is not part of the family that
"mixed" draws from. The family is FAMILY_STYLES; HELD_OUT_STYLE is kept out of training
(TRAINING_STYLES) to measure the shift to an unseen vendor (docs/synthetic.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class NoiseModel:
    """Quantum noise at ``dose`` x the nominal fluence (a range: each view draws one) plus
    one kind of structured noise of relative amplitude ``structured_amplitude``."""

    dose: tuple[float, float] = (1.0, 1.0)
    structured: Literal["none", "fixed_pattern", "correlated"] = "none"
    structured_amplitude: float = 0.0


@dataclass(frozen=True)
class Detector:
    """Detector response and the processing between the raw counts and the stored values.

    mtf_sigma_mm: Gaussian blur of signal and noise together (an indirect CsI detector
        spreads light; a direct a-Se detector barely blurs).
    equalisation: fraction of the thickness fall-off at the edge that is lifted back.
    unsharp: (radius_mm, amount) of "for presentation" edge enhancement, amount a range.
    window_spread: window width as a multiple of the breast's value spread.
    """

    response: Literal["log", "linear"] = "log"
    mtf_sigma_mm: float = 0.0
    equalisation: float = 0.8
    unsharp: tuple[float, tuple[float, float]] = (0.0, (0.0, 0.0))
    window_spread: float = 1.6


@dataclass(frozen=True)
class HeaderConvention:
    """How a vendor writes the image (every variant is a valid MG IOD; dciodvfy-tested).

    voi: "window" (WindowCenter/Width), "lut" (a VOI LUT Sequence instead, a sigmoid
        curve over the breast's values) or "none" (a For Processing image may not carry
        a VOI transform: viewers and preprocessing stretch its range).
    field_height_mm: the detector's field of view along the rows; the pixel spacing is
        field_height_mm / rows, so styles differ in pixel spacing at the same array size.
    hanging: True = a right breast is stored mirrored, chest wall on the right (P\\L);
        False = stored as acquired, chest wall on the left (A\\L), which PatientOrientation
        says and preprocessing honours.
    """

    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2"
    voi: Literal["window", "lut", "none"] = "window"
    bits_stored: int = 12
    intent: Literal["FOR PRESENTATION", "FOR PROCESSING"] = "FOR PRESENTATION"
    field_height_mm: float = 3328 * 0.07
    hanging: bool = True
    manufacturer: str = "sgc-node synthetic phantom"
    model: str = "sgc synth"


@dataclass(frozen=True)
class Style:
    """One phantom "vendor": texture, noise, detector and header convention together."""

    name: str
    description: str
    texture: Literal["gaussian", "lumpy", "ligament", "strands", "ducts"]
    noise: NoiseModel
    detector: Detector
    header: HeaderConvention
    lesions: Literal["classic", "extended"] = "extended"


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            name="classic",
            description="the original generator (legacy, not in the family)",
            texture="gaussian",
            noise=NoiseModel(),
            detector=Detector(),
            header=HeaderConvention(),
            lesions="classic",
        ),
        Style(
            name="gauss",
            description="Gaussian 1/f texture, raw log image (For Processing: no VOI, no "
            "equalisation or edge enhancement), correlated noise, 12-bit",
            texture="gaussian",
            noise=NoiseModel(dose=(0.6, 1.2), structured="correlated", structured_amplitude=0.3),
            detector=Detector(response="log", equalisation=0.0),
            header=HeaderConvention(
                voi="none",
                bits_stored=12,
                intent="FOR PROCESSING",
                field_height_mm=240.0,
                manufacturer="Phantom Vendor A",
                model="Gauss RAW",
            ),
        ),
        Style(
            name="lumpy",
            description="clustered lumpy texture, strong unsharp mask, MONOCHROME1, 14-bit",
            texture="lumpy",
            noise=NoiseModel(dose=(0.4, 1.0), structured="correlated", structured_amplitude=0.6),
            detector=Detector(
                response="log",
                mtf_sigma_mm=0.06,
                equalisation=0.95,
                unsharp=(4.0, (0.3, 0.7)),
                window_spread=1.7,
            ),
            header=HeaderConvention(
                photometric="MONOCHROME1",
                bits_stored=14,
                field_height_mm=260.0,
                manufacturer="Phantom Vendor B",
                model="Lumpy 2",
            ),
        ),
        Style(
            name="ligament",
            description="Cooper's ligament network, indirect detector (MTF blur), linear "
            "response, fixed-pattern noise, MONOCHROME1, 16-bit",
            texture="ligament",
            noise=NoiseModel(
                dose=(0.5, 1.5), structured="fixed_pattern", structured_amplitude=0.004
            ),
            detector=Detector(
                response="linear", mtf_sigma_mm=0.1, equalisation=0.7, window_spread=1.8
            ),
            header=HeaderConvention(
                photometric="MONOCHROME1",
                bits_stored=16,
                field_height_mm=290.0,
                manufacturer="Phantom Vendor C",
                model="Ligament 3",
            ),
        ),
        Style(
            name="strands",
            description="fibrous strands converging on the nipple, high dose, strong MTF "
            "blur, no edge enhancement, 16-bit MONOCHROME2",
            texture="strands",
            noise=NoiseModel(dose=(0.8, 2.0)),
            detector=Detector(
                response="log", mtf_sigma_mm=0.12, equalisation=0.85, window_spread=2.0
            ),
            header=HeaderConvention(
                bits_stored=16,
                field_height_mm=270.0,
                manufacturer="Phantom Vendor E",
                model="Strands 5",
            ),
        ),
        Style(
            name="ducts",
            description="duct tree with lobules, VOI LUT Sequence, MONOCHROME1, 14-bit, "
            "right breasts stored as acquired",
            texture="ducts",
            noise=NoiseModel(
                dose=(0.3, 0.9), structured="fixed_pattern", structured_amplitude=0.006
            ),
            detector=Detector(
                response="log",
                mtf_sigma_mm=0.08,
                equalisation=0.6,
                unsharp=(1.0, (0.3, 0.8)),
                window_spread=1.4,
            ),
            header=HeaderConvention(
                photometric="MONOCHROME1",
                voi="lut",
                bits_stored=14,
                field_height_mm=205.0,
                hanging=False,
                manufacturer="Phantom Vendor D",
                model="Ducts 4",
            ),
        ),
    )
}

#: The phantom family that "mixed" and the benchmarks draw from (classic is legacy).
FAMILY_STYLES: tuple[str, ...] = ("gauss", "lumpy", "ligament", "strands", "ducts")
#: Kept out of training: its texture (duct tree) and its header convention (VOI LUT Sequence,
#: right breasts not mirrored) appear in no training style, like an unseen vendor.
HELD_OUT_STYLE = "ducts"
#: What "mixed" draws from by default: the family without the held-out style.
TRAINING_STYLES: tuple[str, ...] = tuple(s for s in FAMILY_STYLES if s != HELD_OUT_STYLE)
#: Accepted as a style name besides the registry: one style per study, uniformly drawn.
MIXED = "mixed"


def get_style(name: str) -> Style:
    """The registered style ``name``; a clear error lists the valid names."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(
            f"unknown style {name!r}: use one of {', '.join(STYLES)} or {MIXED!r}"
        ) from None


def mixed_pool(hold_out: str | None) -> tuple[str, ...]:
    """The styles "mixed" draws from: the family without ``hold_out`` (None keeps all)."""
    if hold_out is not None:
        get_style(hold_out)
        if hold_out not in FAMILY_STYLES:
            raise ValueError(
                f"hold-out style {hold_out!r} is not in the family {', '.join(FAMILY_STYLES)}"
            )
    return tuple(s for s in FAMILY_STYLES if s != hold_out)
