"""The lesion morphologies the phantom generator knows, by name.

Why a module of its own: the study configuration validates names against this table, and the
morphologies that draw them import the configuration's helpers; keeping the table here keeps
that an acyclic import.
"""

from __future__ import annotations

#: lesion_type -> (malignant, calcification cluster)
LESION_TYPES: dict[str, tuple[bool, bool]] = {
    "mass_round": (False, False),
    "mass_oval": (False, False),
    "mass_lobulated": (False, False),
    "mass_lucent": (False, False),
    "calc_benign": (False, True),
    "mass_spiculated": (True, False),
    "mass_irregular": (True, False),
    "distortion": (True, False),
    "calc_pleomorphic": (True, True),
}


def check_lesion_types(names: tuple[str, ...]) -> None:
    """Refuse an unknown lesion type with the list of known ones."""
    unknown = [n for n in names if n not in LESION_TYPES]
    if unknown:
        raise ValueError(
            f"unknown lesion type(s) {', '.join(unknown)}: use {', '.join(LESION_TYPES)}"
        )
