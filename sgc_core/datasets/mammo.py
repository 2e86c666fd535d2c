"""Mammography data sets: DICOM files with a binary benign/malignant label, a split and metadata.

The real-data adapters (``cbis``, ``vindr``, ``inbreast``) and the synthetic set all build a
:class:`MammoDataset`: a list of :class:`MammoItem` read from the set's own label files, each
image passed through ``sgc_core.preprocess`` on access. It follows the ``sgc_core.datasets``
protocol (``class_names``, ``labels``, ``__len__``, ``__getitem__ -> (tensor, label_index)``)
and adds ``split`` (train/val/test per item), ``metadata(i)`` and ``subset(split)``.

Splits are always at patient level: two views of one breast must never sit on both sides of
an evaluation.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgc_core.preprocess import PreprocessConfig, preprocess_file
from sgc_core.split_fractions import check_split_fractions

CLASS_NAMES = ["benign", "malignant"]
SPLITS = ("train", "val", "test")


class DatasetLayoutError(ValueError):
    """The files on disk do not follow the data set's official layout; the message says how."""


@dataclass(frozen=True)
class MammoItem:
    path: Path
    label: int  # index into CLASS_NAMES
    split: str  # train | val | test
    patient_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


class MammoDataset:
    """DICOM mammograms with labels; images are preprocessed on access (not cached)."""

    def __init__(
        self,
        items: Sequence[MammoItem],
        preprocess: PreprocessConfig | None = None,
        name: str = "mammography",
    ) -> None:
        self.items = list(items)
        self.class_names = list(CLASS_NAMES)
        self.labels = [item.label for item in self.items]
        self.preprocess = preprocess or PreprocessConfig(scaling="[0,1]")
        self.name = name

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        return preprocess_file(item.path, self.preprocess).tensor, item.label

    @property
    def split(self) -> list[str]:
        return [item.split for item in self.items]

    def metadata(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        return {
            "path": str(item.path),
            "patient_id": item.patient_id,
            "split": item.split,
            "label": self.class_names[item.label],
            **item.metadata,
        }

    def subset(self, *splits: str) -> MammoDataset:
        """The items of the given split(s), e.g. ``ds.subset("train")``."""
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; use {SPLITS}")
        return MammoDataset(
            [item for item in self.items if item.split in splits], self.preprocess, self.name
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: n}}: a quick look at the balance."""
        out: dict[str, dict[str, int]] = {}
        for item in self.items:
            per = out.setdefault(item.split, dict.fromkeys(self.class_names, 0))
            per[self.class_names[item.label]] += 1
        return out


def carve_validation(
    patient_split: dict[str, str], val_fraction: float, seed: int
) -> dict[str, str]:
    """Move a seeded fraction of the *training* patients to "val" (the official splits of
    CBIS-DDSM and VinDr-Mammo have no validation part; the test part is never touched)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    train = sorted(p for p, s in patient_split.items() if s == "train")
    n_val = round(val_fraction * len(train))
    if n_val == 0:
        return dict(patient_split)
    order = np.random.default_rng(seed).permutation(len(train))
    moved = {train[i] for i in order[:n_val]}
    return {p: ("val" if p in moved else s) for p, s in patient_split.items()}


def random_patient_split(
    patients: Iterable[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """A seeded train/val/test split of patients for sets without an official one."""
    check_split_fractions(fractions)
    ordered = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_test = round(fractions[2] * len(ordered))
    n_val = round(fractions[1] * len(ordered))
    split = {}
    for rank, index in enumerate(order):
        split[ordered[index]] = (
            "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        )
    return split


def read_csv_rows(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a label CSV (delimiter sniffed: INbreast uses ';'), checking the columns."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetLayoutError(f"cannot read {path}: {exc}") from exc
    first = text.splitlines()[0] if text else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    check_columns(path, columns, required)
    return rows


def check_columns(path: Path, columns: Iterable[str], required: Iterable[str]) -> None:
    missing = [c for c in required if c not in set(columns)]
    if missing:
        raise DatasetLayoutError(f"{path}: missing column(s) {missing}; found {sorted(columns)}")


def check_missing_policy(missing: str) -> None:
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', not {missing!r}")


def raise_if_missing(name: str, missing: list[str], total: int) -> None:
    """One clear error for all the images a label file names but the disk lacks."""
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{name}: {len(missing)} of {total} images named in the label file are missing "
            f"(pass missing='skip' to use the rest):\n  {shown}{more}"
        )


# --- the synthetic set (sgc synth) ----------------------------------------------------------


def load_synthetic(
    root: str | Path,
    preprocess: PreprocessConfig | None = None,
    include_normal: bool = True,
    missing: str = "error",
) -> MammoDataset:
    """A data set written by ``sgc synth`` / ``sgc_core.synth.write_dataset`` (labels.csv).

    include_normal: breasts without a lesion carry the binary label "benign" (not
    malignant); False drops them, leaving a pure benign-vs-malignant lesion task.
    """
    check_missing_policy(missing)
    root = Path(root)
    labels = root / "labels.csv" if root.is_dir() else root
    if not labels.is_file():
        raise DatasetLayoutError(f"{labels}: no labels.csv (write one with `sgc synth`)")
    rows = read_csv_rows(labels, ["path", "label", "split", "patient_id", "finding"])
    items, absent = [], []
    for row in rows:
        if row["finding"] == "normal" and not include_normal:
            continue
        if row["label"] not in CLASS_NAMES:
            raise DatasetLayoutError(
                f"{labels}: label {row['label']!r} is not one of {CLASS_NAMES}"
            )
        if row["split"] not in SPLITS:
            raise DatasetLayoutError(f"{labels}: split {row['split']!r} is not one of {SPLITS}")
        path = labels.parent / row["path"]
        if not path.is_file():
            absent.append(str(path))
            continue
        meta = {k: v for k, v in row.items() if k not in ("path", "label", "split", "patient_id")}
        items.append(
            MammoItem(path, CLASS_NAMES.index(row["label"]), row["split"], row["patient_id"], meta)
        )
    if missing == "error":
        raise_if_missing(str(labels), absent, len(rows))
    return MammoDataset(items, preprocess, name="synthetic")
