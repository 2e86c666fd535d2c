"""The example grids in docs/img (``python -m sgc_core.synth.gallery docs/img``): the
classic examples and difficulty steps, one study per style, every morphology per style.

Kept in the package so the pictures in the docs are always the generator's current output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sgc_core.pixels import presentation_values
from sgc_core.synth.config import SynthConfig
from sgc_core.synth.lesion_types import LESION_TYPES
from sgc_core.synth.study import generate_study_with_truth
from sgc_core.synth.styles import STYLES

KINDS = [
    ("benign mass", False, 1.0),
    ("benign calcifications", False, 0.0),
    ("malignant mass", True, 1.0),
    ("malignant calcifications", True, 0.0),
]


def _crop(image: np.ndarray, row: int, col: int, half: int) -> np.ndarray:
    r0, c0 = max(0, row - half), max(0, col - half)
    return image[r0 : row + half, c0 : col + half]


def _lesion_view(seed: int, malignant: bool, mass_fraction: float, difficulty: float):
    config = SynthConfig.for_size(
        "medium",
        difficulty=difficulty,
        malignant_fraction=1.0 if malignant else 0.0,
        mass_fraction=mass_fraction,
    )
    return generate_study_with_truth(seed, config)


def examples_grid(path: Path, difficulty: float = 0.3, seed: int = 7) -> None:
    """Rows: lesion kinds; columns: CC, MLO, and lesion close-ups of both (left breast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(KINDS), 4, figsize=(12, 3.4 * len(KINDS)))
    for row, (title, malignant, mass_fraction) in enumerate(KINDS):
        study = _lesion_view(seed + row, malignant, mass_fraction, difficulty)
        left = [
            (ds, t)
            for ds, t in zip(study.datasets, study.truth, strict=True)
            if t.laterality == "L"
        ]
        for col, (ds, truth) in enumerate(left):
            image = presentation_values(ds)
            axes[row, col].imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[row, col].set_title(f"L {truth.view}: {title}\n({truth.lesion_type})", fontsize=9)
            half = int(max(24, truth.lesion_radius_px * 1.2))
            close = _crop(image, truth.lesion_row, truth.lesion_col, half)
            axes[row, col + 2].imshow(close, cmap="gray", vmin=0, vmax=1)
            axes[row, col + 2].set_title(f"L {truth.view} close-up", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"sgc synth examples (832x640, difficulty {difficulty}, seed {seed})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def difficulty_grid(path: Path, seed: int = 3) -> None:
    """The same lesion kinds at difficulty 0, 0.5 and 1 (CC close-ups)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [0.0, 0.5, 1.0]
    fig, axes = plt.subplots(len(KINDS), len(levels), figsize=(3.2 * len(levels), 3.2 * len(KINDS)))
    for row, (title, malignant, mass_fraction) in enumerate(KINDS):
        for col, level in enumerate(levels):
            study = _lesion_view(seed + row, malignant, mass_fraction, level)
            ds, truth = study.datasets[1], study.truth[1]  # L CC
            image = presentation_values(ds)
            close = _crop(image, truth.lesion_row, truth.lesion_col, 90)
            axes[row, col].imshow(close, cmap="gray", vmin=0, vmax=1)
            axes[row, col].set_title(f"{title}\ndifficulty {level}", fontsize=9)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def styles_grid(path: Path, size: str = "582x448", difficulty: float = 0.3, seed: int = 5) -> None:
    """One study per style (rows): the four views as a viewer shows them (presentation
    values: For Processing images stretched over their range), the lesion circled."""
    plt = _pyplot()
    names = list(STYLES)
    fig, axes = plt.subplots(len(names), 4, figsize=(10, 3.2 * len(names)))
    for row, name in enumerate(names):
        config = SynthConfig.for_size(size, style=name, difficulty=difficulty)
        study = generate_study_with_truth([seed, row], config)
        for col, (ds, truth) in enumerate(zip(study.datasets, study.truth, strict=True)):
            ax = axes[row, col]
            ax.imshow(presentation_values(ds), cmap="gray", vmin=0, vmax=1)
            if truth.lesion_row is not None:
                circle = plt.Circle(
                    (truth.lesion_col, truth.lesion_row), truth.lesion_radius_px, fill=False
                )
                circle.set_edgecolor("red")
                ax.add_patch(circle)
            ax.set_title(
                f"{name} {truth.laterality} {truth.view}: {truth.lesion_type}\n"
                f"{ds.PhotometricInterpretation}, {ds.BitsStored} bit, "
                f"{truth.pixel_spacing_mm:.2f} mm",
                fontsize=8,
            )
    _finish(fig, path, f"sgc synth styles ({size}, difficulty {difficulty}, seed {seed})")


def morphology_grid(path: Path, difficulty: float = 0.3, seed: int = 11) -> None:
    """Close-ups (L CC, 582x448) of every lesion type (columns) in every style (rows), each
    crop stretched between its 1st and 99.5th percentile."""
    plt = _pyplot()
    names, types = list(STYLES), list(LESION_TYPES)
    fig, axes = plt.subplots(len(names), len(types), figsize=(1.9 * len(types), 2.1 * len(names)))
    for row, name in enumerate(names):
        for col, lesion_type in enumerate(types):
            config = SynthConfig.for_size(
                "582x448", style=name, difficulty=difficulty, lesion_types=(lesion_type,)
            )
            study = generate_study_with_truth([seed, col], config)
            ds, truth = study.datasets[1], study.truth[1]
            half = int(max(20, truth.lesion_radius_px * 1.3))
            crop = _crop(presentation_values(ds), truth.lesion_row, truth.lesion_col, half)
            lo, hi = np.percentile(crop, [1, 99.5])
            axes[row, col].imshow(crop, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6))
            axes[row, col].set_title(f"{name}\n{lesion_type}", fontsize=7)
    _finish(fig, path, f"lesion morphologies per style (difficulty {difficulty})")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv: list[str]) -> None:
    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    examples_grid(out / "synth_examples.png")
    difficulty_grid(out / "synth_difficulty.png")
    styles_grid(out / "synth_styles.png")
    morphology_grid(out / "synth_morphologies.png")


if __name__ == "__main__":
    main(sys.argv[1:])
