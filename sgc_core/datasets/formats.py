"""One entry point for the mammography data set layouts the node can train and evaluate on.

Why: `sgc train` / `sgc evaluate` and the benchmarks name a layout and a folder; each layout
has its own official labels and split, which the adapters encode. Every adapter returns a
MammoDataset whose items carry train / val / test, so a caller never splits again (and never
peeks at test while choosing).
"""

from __future__ import annotations

from pathlib import Path

from sgc_core.datasets.mammo import MammoDataset, load_synthetic
from sgc_core.preprocess import PreprocessConfig

FORMATS = ("synthetic", "cbis-ddsm", "vindr-mammo", "inbreast")


def detect_format(root: str | Path) -> str | None:
    """The layout of ``root`` if it is one of FORMATS, else None (generic folder/CSV)."""
    root = Path(root)
    if not root.is_dir():
        return None
    if (root / "labels.csv").is_file() and (root / "synth.json").is_file():
        return "synthetic"
    if any(root.glob("*case_description*.csv")) or any(root.glob("*/*case_description*.csv")):
        return "cbis-ddsm"
    if any(root.glob("**/breast-level_annotations.csv")):
        return "vindr-mammo"
    if any(root.glob("INbreast.*")) or (root / "AllDICOMs").is_dir():
        return "inbreast"
    return None


def open_mammography(
    fmt: str, root: str | Path, preprocess: PreprocessConfig, seed: int = 0
) -> MammoDataset:
    """The data set at ``root`` in layout ``fmt`` with its official (or seeded) splits."""
    if fmt == "synthetic":
        return load_synthetic(root, preprocess)
    if fmt == "cbis-ddsm":
        from sgc_core.datasets.cbis import load_cbis_ddsm

        return load_cbis_ddsm(root, preprocess, seed=seed)
    if fmt == "vindr-mammo":
        from sgc_core.datasets.vindr import load_vindr_mammo

        return load_vindr_mammo(root, preprocess, seed=seed)
    if fmt == "inbreast":
        from sgc_core.datasets.inbreast import load_inbreast

        return load_inbreast(root, preprocess, seed=seed)
    raise ValueError(f"unknown data set format {fmt!r}; use one of {', '.join(FORMATS)}")
