"""Generic loaders: a folder per class (PNG or DICOM files) and a CSV of ``path,label`` rows.

PNG files are read as grey, resized to ``image_size`` (antialiased bilinear) and scaled to
[0, 1]. DICOM files need a ``transform(path) -> tensor`` supplied by the caller (the
mammography preprocessing lives in ``sgc_core.preprocess``), because windowing, photometric
interpretation and breast cropping are modality decisions a generic loader must not guess.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

Transform = Callable[[Path], torch.Tensor]
PNG_SUFFIXES = {".png"}
DICOM_SUFFIXES = {".dcm", ".dicom"}


def load_png(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """Grey PNG (8 or 16 bit) -> (channels, image_size, image_size) float in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except Exception as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None
    if arr.ndim == 3:  # RGB(A): luminance of the colour channels
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        peak = 255.0
    else:
        peak = (
            65535.0
            if arr.dtype == np.uint16
            else 255.0
            if arr.dtype == np.uint8
            else max(float(arr.max()), 1.0)
        )
    x = torch.from_numpy(arr.astype(np.float32) / peak)[None, None]
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    return x[0].clamp(0.0, 1.0).repeat(channels, 1, 1)


class _FileDataset:
    """Shared loading of (path, label) items; subclasses build the item list."""

    def __init__(
        self,
        items: Sequence[tuple[Path, int]],
        class_names: Sequence[str],
        image_size: int,
        channels: int,
        transform: Transform | None,
    ) -> None:
        if not items:
            raise ValueError("the data set has no images")
        self.items = list(items)
        self.class_names = list(class_names)
        self.labels = [lab for _, lab in self.items]
        self.image_size = image_size
        self.channels = channels
        self.transform = transform
        if transform is None:
            dicoms = [p for p, _ in self.items if p.suffix.lower() not in PNG_SUFFIXES]
            if dicoms:
                raise ValueError(
                    f"{dicoms[0]} is not a PNG; DICOM files need a transform(path) -> tensor "
                    "(e.g. sgc_core.preprocess)"
                )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        if path.suffix.lower() in PNG_SUFFIXES:
            x = load_png(path, self.image_size, self.channels)
        else:
            assert self.transform is not None
            x = self.transform(path)
            if x.dim() == 2:
                x = x[None]
            if x.shape[0] == 1 and self.channels != 1:
                x = x.repeat(self.channels, 1, 1)
        expected = (self.channels, self.image_size, self.image_size)
        if tuple(x.shape) != expected:
            raise ValueError(f"{path}: image of shape {tuple(x.shape)}, expected {expected}")
        return x.float(), label


class FolderDataset(_FileDataset):
    """``root/<class name>/*.png|*.dcm``; classes are the sub-folder names, sorted, unless given."""

    def __init__(
        self,
        root: str | Path,
        image_size: int,
        channels: int = 1,
        transform: Transform | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"data folder {root} does not exist")
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        names = list(class_names) if class_names is not None else found
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise ValueError(f"unknown class folder(s) {unknown} in {root}; expected {names}")
        if len(names) < 2:
            raise ValueError(f"{root} needs at least two class folders, found {found}")
        suffixes = PNG_SUFFIXES | DICOM_SUFFIXES
        items = [
            (p, i)
            for i, name in enumerate(names)
            if (root / name).is_dir()
            for p in sorted((root / name).iterdir())
            if p.is_file() and p.suffix.lower() in suffixes
        ]
        super().__init__(items, names, image_size, channels, transform)


class CsvDataset(_FileDataset):
    """A CSV with header ``path,label``; relative paths are relative to the CSV's folder."""

    def __init__(
        self,
        csv_path: str | Path,
        image_size: int,
        channels: int = 1,
        transform: Transform | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise ValueError(f"CSV file {csv_path} does not exist")
        with csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{csv_path} must have a header with columns 'path,label'")
            rows = list(reader)
        labels_seen = sorted({r["label"] for r in rows})
        names = list(class_names) if class_names is not None else labels_seen
        index = {n: i for i, n in enumerate(names)}
        items = []
        for line, row in enumerate(rows, start=2):
            if row["label"] not in index:
                raise ValueError(
                    f"{csv_path}:{line}: unknown class {row['label']!r}; expected one of {names}"
                )
            p = Path(row["path"])
            p = p if p.is_absolute() else csv_path.parent / p
            if not p.is_file():
                # Refused before training starts, not at the first batch that draws it.
                raise ValueError(f"{csv_path}:{line}: image {row['path']} does not exist")
            items.append((p, index[row["label"]]))
        super().__init__(items, names, image_size, channels, transform)


def open_dataset(
    source: str | Path,
    image_size: int,
    channels: int = 1,
    transform: Transform | None = None,
    class_names: Sequence[str] | None = None,
) -> FolderDataset | CsvDataset:
    """A folder -> FolderDataset, a ``.csv`` file -> CsvDataset."""
    source = Path(source)
    if source.suffix.lower() == ".csv":
        return CsvDataset(source, image_size, channels, transform, class_names)
    return FolderDataset(source, image_size, channels, transform, class_names)
