"""A tiny real model for worker tests, trained through the sgc_core API in seconds on CPU.

Why trained, not faked: the worker tests exercise the real path (card, sha256 check,
preprocessing from the card, ELBO classification); only the model's quality is irrelevant.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 16


def train_tiny_model(folder: Path) -> Path:
    """Train a 2-class ("benign", "malignant") model on noise images; return the weights path."""
    import torch

    from sgc_core.datasets.base import TensorDataset
    from sgc_core.preprocess import PreprocessConfig
    from sgc_core.train import TrainConfig, train_and_export

    torch.manual_seed(0)
    n = 24
    images = torch.rand(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    images[n // 2 :] = images[n // 2 :] * 0.5 + 0.5  # brighter "malignant" class
    labels = [0] * (n // 2) + [1] * (n // 2)
    data = TensorDataset(images, labels, ["benign", "malignant"])
    config = TrainConfig(
        image_size=IMAGE_SIZE,
        width=8,
        steps=12,
        batch_size=8,
        checkpoint_every=1000,
        amp=False,
        ema_decay=0.0,
    )
    preprocess = PreprocessConfig(image_size=IMAGE_SIZE, scaling="[0,1]").to_dict()
    weights, _card = train_and_export(
        config,
        data,
        folder / "tiny",
        name="sgc-tiny-test",
        version="0.0.1",
        preprocess=preprocess,
        estimator={"k": 2},
        progress=False,
    )
    return weights
