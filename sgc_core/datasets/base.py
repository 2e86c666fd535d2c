"""The data set protocol training and evaluation read, and an in-memory implementation.

A data set yields ``(image, label_index)`` with image a float tensor (C, H, W) in [0, 1] (the
``sgc_core.scaling.INPUT_RANGE``) and exposes ``class_names`` plus ``labels`` (the label index of
every item, so class-balanced sampling and class priors need no image decoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Dataset(Protocol):
    class_names: list[str]
    labels: list[int]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


class TensorDataset:
    """Images already in memory, e.g. synthetic sets, tests and benchmark data."""

    def __init__(
        self, images: torch.Tensor, labels: Sequence[int], class_names: Sequence[str]
    ) -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if len(labels) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(labels)} labels")
        bad = [lab for lab in labels if not 0 <= int(lab) < len(class_names)]
        if bad:
            raise ValueError(
                f"label index {bad[0]} outside the {len(class_names)} classes {list(class_names)}"
            )
        self.images = images.float()
        self.labels = [int(lab) for lab in labels]
        self.class_names = list(class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.labels[index]


class Subset:
    """A view of some indices of a data set (train/validation splits)."""

    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = list(indices)
        self.class_names = base.class_names
        self.labels = [base.labels[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.base[self.indices[index]]


def stratified_split(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Split per class so a rare class (malignant) is present in both parts when possible."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    gen = torch.Generator().manual_seed(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c in range(len(dataset.class_names)):
        idx = [i for i, lab in enumerate(dataset.labels) if lab == c]
        perm = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        n_val = round(len(idx) * val_fraction)
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val_idx += perm[:n_val]
        train_idx += perm[n_val:]
    return Subset(dataset, sorted(train_idx)), Subset(dataset, sorted(val_idx))


def load_all(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a whole (small) data set: (N, C, H, W) images and (N,) labels."""
    if len(dataset) == 0:
        raise ValueError("the data set is empty")
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([im for im, _ in items]), torch.tensor([lab for _, lab in items])
