"""Data sets: the protocol, in-memory sets and the generic folder / CSV loaders.

Mammography-specific loaders live in ``sgc_core.datasets.mammo*`` (imported explicitly).
"""

from sgc_core.datasets.base import Dataset, Subset, TensorDataset, load_all, stratified_split
from sgc_core.datasets.generic import CsvDataset, FolderDataset, load_png, open_dataset

__all__ = [
    "CsvDataset",
    "Dataset",
    "FolderDataset",
    "Subset",
    "TensorDataset",
    "load_all",
    "load_png",
    "open_dataset",
    "stratified_split",
]
