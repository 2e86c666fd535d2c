"""A tiny real model for worker tests, trained through the sgc_core API in seconds on CPU.

Why trained, not faked: the worker tests exercise the real path (card, sha256 check,
preprocessing from the card, ELBO classification); only the model's quality is irrelevant.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 16


def train_tiny_model(folder: Path, image_size: int = IMAGE_SIZE, k: int = 2) -> Path:
    """Train a 2-class ("benign", "malignant") model on noise images; return the weights path.

    Cached: a folder that already holds the model is reused. A larger ``image_size`` and ``k``
    (ELBO time samples) make classification slower, for tests that must catch a job mid-run.
    """
    weights = folder / "tiny.safetensors"
    if weights.exists() and (folder / "tiny.json").exists():
        return weights
    import torch

    from sgc_core.datasets.base import TensorDataset
    from sgc_core.preprocess import PreprocessConfig
    from sgc_core.train import TrainConfig, train_and_export

    torch.manual_seed(0)
    n = 24
    images = torch.rand(n, 1, image_size, image_size)
    images[n // 2 :] = images[n // 2 :] * 0.5 + 0.5  # brighter "malignant" class
    labels = [0] * (n // 2) + [1] * (n // 2)
    data = TensorDataset(images, labels, ["benign", "malignant"])
    config = TrainConfig(
        image_size=image_size,
        width=8,
        steps=12,
        batch_size=8,
        checkpoint_every=1000,
        amp=False,
        ema_decay=0.0,
    )
    preprocess = PreprocessConfig(image_size=image_size, scaling="[0,1]").to_dict()
    weights, _card = train_and_export(
        config,
        data,
        folder / "tiny",
        name="sgc-tiny-test",
        version="0.0.1",
        preprocess=preprocess,
        estimator={"k": k},
        progress=False,
    )
    return weights
