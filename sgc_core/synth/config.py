"""Parameters of the synthetic mammography generator and how the difficulty knob moves them."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from sgc_core.synth.lesion_types import check_lesion_types
from sgc_core.synth.styles import HELD_OUT_STYLE, MIXED, STYLES, Style, get_style, mixed_pool

# Image sizes: "full" is a Hologic-like 3328 x 2560 detector at 70 um (17 MB at 16 bits);
# "small" keeps the same 233 mm field of view at ~0.9 mm per pixel for fast tests.
SIZES: dict[str, tuple[int, int]] = {
    "small": (256, 208),
    "medium": (832, 640),
    "full": (3328, 2560),
}
FULL_ROWS, FULL_COLS = SIZES["full"]
FIELD_HEIGHT_MM = FULL_ROWS * 0.07


def parse_size(size: str | tuple[int, int]) -> tuple[int, int]:
    """ "small" | "medium" | "full" | "ROWSxCOLS" | (rows, cols) -> (rows, cols)."""
    if isinstance(size, tuple | list):
        rows, cols = int(size[0]), int(size[1])
    elif size in SIZES:
        rows, cols = SIZES[size]
    else:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(size))
        if match is None:
            raise ValueError(f"size must be small, medium, full or ROWSxCOLS, not {size!r}")
        rows, cols = int(match.group(1)), int(match.group(2))
    if rows < 64 or cols < 48:
        raise ValueError(f"size {rows}x{cols} is too small for a breast phantom (min 64x48)")
    if rows > 8192 or cols > 8192:
        raise ValueError(f"size {rows}x{cols} is larger than any mammography detector (max 8192)")
    return rows, cols


def lerp(easy: float, hard: float, difficulty: float) -> float:
    """The parameter value at this difficulty (0 = easy end, 1 = hard end)."""
    return easy + (hard - easy) * difficulty


@dataclass(frozen=True)
class SynthConfig:
    """What a generated study looks like.

    difficulty: 0 (large, high-contrast lesions with textbook shapes in fatty breasts) to 1
        (small, faint lesions whose shapes overlap between classes, in dense breasts at a
        lower dose). docs/synthetic.md lists every parameter it moves.
    malignant_fraction: probability that a breast with a lesion has a malignant one.
    normal_fraction: probability that a breast has no lesion at all. Such breasts are labelled
        "benign" in the binary label column (the negative class means "no malignancy") and
        "normal" in the finding column, so a user can drop them.
    mass_fraction: probability that a lesion is a mass rather than calcifications.
    bits_stored: 12 or 14 (16-bit words either way); the classic style only (a family
        style fixes its own).
    monochrome1_fraction: probability that a study is written MONOCHROME1 (inverted); the
        classic style only.
    style: a style of styles.STYLES, or "mixed": each study draws one uniformly from the
        family without ``hold_out``. "classic" (the default) is the generator as it was
        before styles, byte for byte.
    hold_out: the family style "mixed" never draws (None: draw from all of the family).
    lesion_types: if not empty, every lesion is drawn uniformly from these types
        (morphologies.LESION_TYPES), whatever the class fractions say.
    pixel_mm: if set, every image has this pixel spacing instead of the size rows x cols:
        its rows are the style's field height / pixel_mm, its columns in the full
        detector's proportion, so images of different styles differ in size.
    """

    rows: int = 256
    cols: int = 208
    difficulty: float = 0.5
    malignant_fraction: float = 0.5
    normal_fraction: float = 0.0
    mass_fraction: float = 0.6
    bits_stored: int = 12
    monochrome1_fraction: float = 0.0
    style: str = "classic"
    hold_out: str | None = HELD_OUT_STYLE
    lesion_types: tuple[str, ...] = ()
    pixel_mm: float | None = None

    def __post_init__(self) -> None:
        if self.style != MIXED:
            get_style(self.style)
        mixed_pool(self.hold_out)
        object.__setattr__(self, "lesion_types", tuple(self.lesion_types))
        check_lesion_types(self.lesion_types)
        if self.pixel_mm is not None:
            if not 0.05 <= self.pixel_mm <= 5.0:
                raise ValueError(f"pixel_mm must be in [0.05, 5] mm, not {self.pixel_mm}")
            for name in STYLES:
                parse_size(self._shape_at(STYLES[name]))
        if self.style != "classic" and (self.bits_stored != 12 or self.monochrome1_fraction):
            raise ValueError(
                f"bits_stored and monochrome1_fraction apply to the classic style only; "
                f"style {self.style!r} fixes its own header convention (sgc_core/synth/styles.py)"
            )
        parse_size((self.rows, self.cols))
        for name in ("difficulty", "malignant_fraction", "normal_fraction", "mass_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {value}")
        if not 0.0 <= self.monochrome1_fraction <= 1.0:
            raise ValueError(
                f"monochrome1_fraction must be in [0, 1], not {self.monochrome1_fraction}"
            )
        if self.bits_stored not in (12, 13, 14):
            raise ValueError(f"bits_stored must be 12, 13 or 14, not {self.bits_stored}")

    @property
    def pixel_spacing_mm(self) -> float:
        """Square pixels of the classic style; the field of view's height is that of the
        full detector. A family style has its own field (spacing_mm)."""
        return FIELD_HEIGHT_MM / self.rows

    def spacing_mm(self, style: Style) -> float:
        """The pixel spacing of an image of this size written in ``style``."""
        return style.header.field_height_mm / self.rows

    def for_style(self, style: Style) -> SynthConfig:
        """This config with the image size ``style`` has at ``pixel_mm`` (itself if unset)."""
        if self.pixel_mm is None:
            return self
        rows, cols = self._shape_at(style)
        return dataclasses.replace(self, rows=rows, cols=cols)

    def _shape_at(self, style: Style) -> tuple[int, int]:
        rows = round(style.header.field_height_mm / self.pixel_mm)
        return rows, round(rows * FULL_COLS / FULL_ROWS)

    @classmethod
    def for_size(cls, size: str | tuple[int, int], **kwargs: Any) -> SynthConfig:
        rows, cols = parse_size(size)
        return cls(rows=rows, cols=cols, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
