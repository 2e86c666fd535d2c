"""Tissue crops on the scan grid, labelled by what lies at their centre: the lesion finder's data.

Why crops: a lesion of 5-30 mm in a 200 mm breast is a few per cent of a whole view, so a
whole-view label says little about any pixel. A crop of ``crop`` scan pixels (64 = 25.6 mm at
0.4 mm) centred near an annotated lesion is labelled with the lesion's class; crops drawn from
the breast away from any lesion are labelled ``normal``. The lesion crops are jittered by up to
half the scan stride, which is the largest offset between a lesion and the nearest window when
the finder tiles a breast (:mod:`sgc_core.lesion_scan`).

The annotations are source-pixel centres and radii: the synthetic labels.csv gives them, and
the real data sets' ROI masks (CBIS-DDSM), boxes (VinDr-Mammo) and contours (INbreast) reduce
to the same (centre, radius) per lesion.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch

from sgc_core.datasets.base import TensorDataset
from sgc_core.scan_geometry import ScanImage, scan_dataset

CROP_CLASSES = ("normal", "benign", "malignant")


class CropDataError(ValueError):
    """Crops and labels that do not belong together; the message says which and why."""


@dataclass(frozen=True)
class LesionAnnotation:
    """One view and its lesion (``finding`` normal means none; row/col/radius in source px)."""

    path: str
    finding: str
    split: str
    row: float | None = None
    col: float | None = None
    radius: float = 0.0
    style: str = ""
    patient_id: str = ""
    # Further lesions on the same view: (finding, row, col, radius), cropped by their own class.
    others: tuple[tuple[str, float, float, float], ...] = ()

    def lesions(self) -> list[tuple[str, float, float, float]]:
        """Every lesion of the view, its own one first."""
        if self.finding == "normal" or self.row is None or self.col is None:
            return list(self.others)
        return [(self.finding, self.row, self.col, self.radius), *self.others]


@dataclass(frozen=True)
class CropRecipe:
    """How crops are cut (stored in the model card so serving tiles the same way)."""

    spacing_mm: float = 0.4
    crop: int = 64
    stride: int = 32
    lesion_crops: int = 2
    background_crops: int = 2
    seed: int = 0


ANNOTATION_COLUMNS = ("path", "finding", "split", "lesion_row", "lesion_col", "lesion_radius_px")


def read_synthetic_annotations(root: Path) -> list[LesionAnnotation]:
    """The per-view truth of a ``sgc synth`` folder, or of any folder whose labels.csv has the
    columns :data:`ANNOTATION_COLUMNS` (paths relative to the folder; a lesion's centre and
    radius in source pixels; finding normal, benign or malignant; split train, val or test).
    Rows that cannot be crops are refused with the row's number and why."""
    labels = Path(root) / "labels.csv"
    if not labels.is_file():
        raise CropDataError(f"{labels} not found: expected a folder written by `sgc synth`")
    with labels.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ANNOTATION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CropDataError(f"{labels}: missing column(s) {missing}")
        return [_annotation(Path(root), labels, i, row) for i, row in enumerate(reader, start=2)]


def _annotation(root: Path, labels: Path, line: int, row: dict) -> LesionAnnotation:
    where = f"{labels}:{line}"
    finding, split = row["finding"], row["split"]
    if finding not in CROP_CLASSES:
        raise CropDataError(f"{where}: finding {finding!r} is not one of {list(CROP_CLASSES)}")
    if split not in ("train", "val", "test"):
        raise CropDataError(f"{where}: split {split!r} is not train, val or test")
    if not (root / row["path"]).is_file():
        raise CropDataError(f"{where}: image {row['path']} does not exist")
    lesion = finding != "normal"
    try:
        centre = (float(row["lesion_row"]), float(row["lesion_col"])) if lesion else None
        radius = float(row["lesion_radius_px"] or 0.0) if lesion else 0.0
    except ValueError:
        raise CropDataError(
            f"{where}: a {finding} lesion needs a numeric centre and radius"
        ) from None
    if lesion and radius <= 0:
        raise CropDataError(f"{where}: lesion radius must be > 0, got {radius}")
    return LesionAnnotation(
        path=str(root / row["path"]),
        finding=finding,
        split=split,
        row=centre[0] if centre else None,
        col=centre[1] if centre else None,
        radius=radius,
        style=row.get("style", ""),
        patient_id=row.get("patient_id", ""),
    )


def cut(image: np.ndarray, centre_row: float, centre_col: float, size: int) -> np.ndarray:
    """A ``size`` square centred at (row, col), zero outside the image (the background)."""
    half = size // 2
    r0, c0 = int(round(centre_row)) - half, int(round(centre_col)) - half
    out = np.zeros((size, size), dtype=np.float32)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + size, image.shape[0]), min(c0 + size, image.shape[1])
    if re > rs and ce > cs:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = image[rs:re, cs:ce]
    return out


def view_crops(
    scan: ScanImage, note: LesionAnnotation, recipe: CropRecipe, rng: np.random.Generator
) -> list[tuple[np.ndarray, str]]:
    """The crops of one view: jittered crops of each lesion, then background crops far from all."""
    out: list[tuple[np.ndarray, str]] = []
    jitter = recipe.stride / 2
    for finding, (r, c, _) in zip(
        (x[0] for x in note.lesions()), lesions_on_grid(scan, note), strict=True
    ):
        for _ in range(recipe.lesion_crops):
            dr, dc = rng.uniform(-jitter, jitter, size=2)
            out.append((cut(scan.image, r + dr, c + dc, recipe.crop), finding))
    rows, cols = np.nonzero(scan.mask)
    if rows.size == 0:
        return out
    keep = far_from_lesions(rows, cols, scan, note, recipe.crop)
    if keep.any():
        pick = rng.choice(np.flatnonzero(keep), size=recipe.background_crops, replace=True)
        out.extend((cut(scan.image, rows[i], cols[i], recipe.crop), "normal") for i in pick)
    return out


def to_levels(img: np.ndarray) -> np.ndarray:
    """A [0, 1] crop as the model's 256 grey levels (how a CropSet stores it)."""
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def lesions_on_grid(scan: ScanImage, note: LesionAnnotation) -> list[tuple[float, float, float]]:
    """Each lesion of the view as (row, col, radius) on the scan grid."""
    out = []
    for _, row, col, radius in note.lesions():
        sr, sc = scan.geometry.to_scan(np.array([row]), np.array([col]))
        out.append((float(sr[0]), float(sc[0]), radius / (0.5 * sum(scan.geometry.step))))
    return out


def far_from_lesions(
    rows: np.ndarray, cols: np.ndarray, scan: ScanImage, note: LesionAnnotation, crop: int
) -> np.ndarray:
    """Which scan-grid points are far enough from every lesion (its radius plus three
    quarters of a crop) that a crop centred there shows none of it: a normal crop."""
    keep = np.ones(len(rows), dtype=bool)
    for r, c, radius in lesions_on_grid(scan, note):
        far = radius + 0.75 * crop
        keep &= (rows - r) ** 2 + (cols - c) ** 2 > far**2
    return keep


def _crops_of(args: tuple[int, LesionAnnotation, CropRecipe]) -> list[tuple[np.ndarray, str]]:
    index, note, recipe = args
    scan = scan_dataset(pydicom.dcmread(note.path), recipe.spacing_mm)
    rng = np.random.default_rng([recipe.seed, index])
    return view_crops(scan, note, recipe, rng)


@dataclass
class CropSet:
    """Crops as uint8 (the model's 256 grey levels), labels, and what each came from."""

    images: np.ndarray  # (N, crop, crop) uint8
    labels: np.ndarray  # (N,) index into CROP_CLASSES
    splits: np.ndarray  # (N,) str
    styles: np.ndarray  # (N,) str
    recipe: CropRecipe

    def dataset(self, split: str | None = None, style_not: str | None = None) -> TensorDataset:
        keep = np.ones(len(self.labels), dtype=bool)
        if split is not None:
            keep &= self.splits == split
        if style_not is not None:
            keep &= self.styles != style_not
        x = torch.from_numpy(self.images[keep].astype(np.float32) / 255.0)[:, None]
        return TensorDataset(x, self.labels[keep].tolist(), list(CROP_CLASSES))

    def with_crops(self, images: np.ndarray, label: str, split: str, styles: np.ndarray) -> CropSet:
        """This set plus ``images`` (N, crop, crop) uint8 of one class and split."""
        n = len(images)
        return CropSet(
            images=np.concatenate([self.images, images]),
            labels=np.concatenate([self.labels, np.full(n, CROP_CLASSES.index(label))]),
            splits=np.concatenate([self.splits, np.full(n, split)]).astype(str),
            styles=np.concatenate([self.styles, styles]).astype(str),
            recipe=self.recipe,
        )

    def joined(self, other: CropSet, split: str | None = None) -> CropSet:
        """This set plus ``other``'s crops (only its ``split`` when given). Why: a finder can
        be trained on a second draw aimed at its weak cases beside its own; the windows must
        be the same, or the network would learn two geometries under one label."""
        a, b = self.recipe, other.recipe
        if (a.crop, a.spacing_mm) != (b.crop, b.spacing_mm):
            raise CropDataError(
                f"crops of {b.crop} px at {b.spacing_mm} mm cannot join crops of "
                f"{a.crop} px at {a.spacing_mm} mm"
            )
        keep = np.ones(len(other.labels), bool) if split is None else other.splits == split
        return CropSet(
            images=np.concatenate([self.images, other.images[keep]]),
            labels=np.concatenate([self.labels, other.labels[keep]]),
            splits=np.concatenate([self.splits, other.splits[keep]]).astype(str),
            styles=np.concatenate([self.styles, other.styles[keep]]).astype(str),
            recipe=self.recipe,
        )

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            images=self.images,
            labels=self.labels,
            splits=self.splits,
            styles=self.styles,
            recipe=json.dumps(asdict(self.recipe)),
        )

    @classmethod
    def load(cls, path: Path) -> CropSet:
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CropDataError(f"{path}: not a crop set ({exc})") from None
        missing = {"images", "labels", "splits", "styles", "recipe"} - set(data.files)
        if missing:
            raise CropDataError(f"{path}: not a crop set (missing {sorted(missing)})")
        labels = data["labels"]
        sizes = {k: len(data[k]) for k in ("images", "labels", "splits", "styles")}
        if len(set(sizes.values())) != 1:
            raise CropDataError(f"{path}: crops and labels do not match: {sizes}")
        if labels.size and (labels.min() < 0 or labels.max() >= len(CROP_CLASSES)):
            raise CropDataError(f"{path}: label index outside {list(CROP_CLASSES)}")
        recipe = CropRecipe(**json.loads(str(data["recipe"])))
        return cls(data["images"], labels, data["splits"], data["styles"], recipe)


def build_crops(notes: Sequence[LesionAnnotation], recipe: CropRecipe, workers: int = 1) -> CropSet:
    """Cut every view's crops (in parallel processes; each view's draw is seeded by its index)."""
    bad = sorted({n.finding for n in notes} - set(CROP_CLASSES))
    if bad:
        raise CropDataError(f"findings {bad} are not crop classes {list(CROP_CLASSES)}")
    jobs = [(i, n, recipe) for i, n in enumerate(notes)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            per_view = list(pool.map(_crops_of, jobs, chunksize=8))
    else:
        per_view = [_crops_of(j) for j in jobs]
    images, labels, splits, styles = [], [], [], []
    for note, crops in zip(notes, per_view, strict=True):
        for img, finding in crops:
            images.append(to_levels(img))
            labels.append(CROP_CLASSES.index(finding))
            splits.append(note.split)
            styles.append(note.style)
    shape = (0, recipe.crop, recipe.crop)
    return CropSet(
        images=np.stack(images) if images else np.zeros(shape, dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits, dtype=str),
        styles=np.asarray(styles, dtype=str),
        recipe=recipe,
    )
