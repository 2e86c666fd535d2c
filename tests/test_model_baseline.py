"""The discriminative CNN baseline of the model-quality benchmark: it learns, and it rejects
bad input with clear errors."""

from __future__ import annotations

import pytest
import torch

from sgc_core.baseline import BaselineConfig, SmallResNet, predict_logits, train_baseline
from sgc_core.datasets.base import TensorDataset


def _bright_square_task(n: int, size: int = 16, seed: int = 0) -> TensorDataset:
    """Class 1 has a faint bright square at a random place in noise; class 0 does not."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, 1, size, size, generator=gen)
    labels = [i % 2 for i in range(n)]
    for i, lab in enumerate(labels):
        if lab:
            r, c = torch.randint(0, size - 4, (2,), generator=gen).tolist()
            x[i, 0, r : r + 4, c : c + 4] += 0.5
    return TensorDataset(x, labels, ["benign", "malignant"])


def test_baseline_learns_a_local_pattern():
    torch.manual_seed(0)
    train = _bright_square_task(64)
    test = _bright_square_task(64, seed=1)
    cfg = BaselineConfig(image_size=16, width=8, stages=3, steps=80, batch_size=16, lr=3e-3)
    res = train_baseline(cfg, train)
    logits = predict_logits(res.model, test.images)
    acc = (logits.argmax(1) == torch.tensor(test.labels)).float().mean().item()
    assert acc >= 0.9
    assert len(res.losses) == 80
    assert sum(res.losses[-10:]) < sum(res.losses[:10])


def test_baseline_same_seed_same_model():
    data = _bright_square_task(16)
    cfg = BaselineConfig(image_size=16, width=4, stages=2, steps=3, batch_size=4)
    a = predict_logits(train_baseline(cfg, data).model, data.images)
    b = predict_logits(train_baseline(cfg, data).model, data.images)
    assert torch.equal(a, b)


def test_baseline_output_shape():
    model = SmallResNet(num_classes=3, channels=1, width=4, stages=3)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 3)


def test_baseline_errors():
    one_class = TensorDataset(torch.rand(4, 1, 8, 8), [0, 0, 0, 0], ["benign", "malignant"])
    with pytest.raises(ValueError, match="two classes"):
        train_baseline(BaselineConfig(image_size=8, steps=1), one_class)
    with pytest.raises(ValueError, match="steps"):
        train_baseline(BaselineConfig(image_size=8, steps=0), _bright_square_task(4, 8))
    with pytest.raises(ValueError, match="learning rate"):
        train_baseline(BaselineConfig(image_size=8, lr=0.0), _bright_square_task(4, 8))
