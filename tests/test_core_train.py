"""Training: the loss falls, runs are reproducible, resume continues the same run, export loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sgc_core.checkpoint import load_model, save_model
from sgc_core.datasets import TensorDataset
from sgc_core.inference import load_classifier
from sgc_core.train import TrainConfig, batch_indices, train, train_and_export


def toy_dataset(n: int = 48, size: int = 16, seed: int = 0) -> TensorDataset:
    """Two visibly different classes: a bright disc, or horizontal bars, on noisy grey."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4) ** 2).float()
    bars = ((yy // 2) % 2 == 0).float()
    labels = [i % 2 for i in range(n)]
    imgs = torch.stack([(0.2 + 0.6 * (disc if lab == 0 else bars)) for lab in labels])[:, None]
    imgs = (imgs + 0.05 * torch.randn(imgs.shape, generator=g)).clamp(0, 1)
    return TensorDataset(imgs, labels, ["benign", "malignant"])


def toy_card(architecture: dict) -> dict:
    """The least card save_model needs for a toy_dataset network."""
    return {
        "name": "t",
        "version": "1",
        "classes": ["benign", "malignant"],
        "image_size": 16,
        "channels": 1,
        "sde": tiny_config().sde,
        "architecture": architecture,
    }


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        image_size=16,
        channels=1,
        arch="default",
        width=8,
        steps=40,
        batch_size=16,
        lr=2e-3,
        checkpoint_every=10,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("arch", ["default", "seed"])
def test_training_decreases_the_loss(arch: str) -> None:
    torch.set_num_threads(1)
    r = train(tiny_config(arch=arch, steps=60), toy_dataset(), progress=False)
    first = sum(r.losses[:8]) / 8
    last = sum(r.losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)


class _NoiseLevelProbe(torch.nn.Module):
    """A one-parameter score network that records the noise levels it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t, y):
        self.seen.append(t.detach().clone())
        return -self.scale * x


def test_a_training_noise_band_draws_t_only_below_its_top() -> None:
    from sgc_core.sde import VPSDE
    from sgc_core.train import dsm_loss

    probe, gen, x = _NoiseLevelProbe(), torch.Generator().manual_seed(0), torch.rand(512, 1, 4, 4)
    y = torch.zeros(512, dtype=torch.long)
    dsm_loss(probe, VPSDE(), x, y, gen, 1e-5, None, t_max=0.3)
    dsm_loss(probe, VPSDE(), x, y, gen, 1e-5, None)
    low, full = probe.seen
    assert float(low.max()) <= 0.3 and float(low.max()) > 0.25
    assert float(full.max()) > 0.9  # the default still trains the whole diffusion


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"t_max": 0.0}, "t_max"),
        ({"t_max": 1.5}, "t_max"),
        ({"t_max": 0.5, "likelihood_weighting": True}, "likelihood"),
        ({"ce_weight": -0.1}, "ce_weight"),
        ({"ce_t_max": 0.6, "t_max": 0.5}, "ce_t_max"),
        ({"ce_t_max": 0.01}, "ce_t_max"),
    ],
)
def test_a_training_noise_band_outside_the_diffusion_is_refused(change, words) -> None:
    with pytest.raises(ValueError, match=words):
        tiny_config(**change).validate()


def test_the_classification_term_band_defaults_to_dsm_band_and_can_be_narrowed() -> None:
    assert tiny_config(t_max=0.5).ce_band() == (0.01, 0.5)
    assert tiny_config(t_max=0.5, ce_t_max=0.05).ce_band() == (0.01, 0.05)


def test_same_seed_same_weights_and_resume_continues_the_same_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    ds = toy_dataset()
    straight = train(tiny_config(steps=20), ds, tmp_path / "a", progress=False)
    again = train(tiny_config(steps=20), ds, tmp_path / "b", progress=False)
    part = train(tiny_config(steps=10), ds, tmp_path / "c", progress=False)
    resumed = train(tiny_config(steps=20), ds, tmp_path / "c", resume=True, progress=False)
    assert part.step == 10 and resumed.step == 20
    for (k, v), v2, v3 in zip(
        straight.model.state_dict().items(),
        again.model.state_dict().values(),
        resumed.model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(v, v2), k
        assert torch.equal(v, v3), k
    assert resumed.losses == straight.losses


def test_a_time_budget_stops_early_with_its_state_saved_and_resume_finishes_the_run(
    tmp_path: Path,
) -> None:
    """max_seconds (a lease of fixed length) ends a session after its first step past the
    budget, keeps the state, and a resumed run is the same as one never stopped."""
    torch.set_num_threads(1)
    ds = toy_dataset()
    straight = train(tiny_config(steps=20), ds, tmp_path / "a", progress=False)
    cut = train(tiny_config(steps=20), ds, tmp_path / "b", progress=False, max_seconds=0.0)
    assert cut.step == 1 and len(cut.losses) == 1
    resumed = train(tiny_config(steps=20), ds, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 20 and resumed.losses == straight.losses
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    roomy = train(tiny_config(steps=20), ds, tmp_path / "c", progress=False, max_seconds=600.0)
    assert roomy.step == 20


def test_resume_refuses_different_settings(tmp_path: Path) -> None:
    ds = toy_dataset(16)
    train(tiny_config(steps=2), ds, tmp_path, progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        train(tiny_config(steps=4, lr=1e-3), ds, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="no training state"):
        train(tiny_config(steps=4), ds, tmp_path / "none", resume=True, progress=False)


def test_resume_reads_a_state_saved_before_the_training_band_and_refuses_another_band(
    tmp_path: Path,
) -> None:
    from sgc_core.train_run import STATE_FILE

    ds = toy_dataset(16)
    train(tiny_config(steps=2), ds, tmp_path, progress=False)
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    del state["config"]["t_max"]  # as written before the band existed: the whole diffusion
    del state["config"]["ce_weight"]  # and before the classification term: DSM alone
    del state["config"]["ce_t_max"]  # and before its own band: the term over DSM's
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(ValueError, match="settings differ"):
        train(tiny_config(steps=4, t_max=0.5), ds, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        train(tiny_config(steps=4, ce_weight=1.0), ds, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        train(tiny_config(steps=4, ce_t_max=0.05), ds, tmp_path, resume=True, progress=False)
    assert train(tiny_config(steps=4), ds, tmp_path, resume=True, progress=False).step == 4


def test_balanced_sampling_evens_out_a_rare_class() -> None:
    labels = [0] * 95 + [1] * 5
    cfg = tiny_config(balanced=True, batch_size=64)
    drawn = torch.cat([batch_indices(labels, cfg, s, 2) for s in range(20)])
    frac = float((torch.tensor(labels)[drawn] == 1).float().mean())
    assert 0.4 < frac < 0.6
    plain = torch.cat([batch_indices(labels, tiny_config(batch_size=50), s, 2) for s in range(2)])
    assert sorted(plain.tolist()) == list(range(100))  # one epoch visits every item once


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    r = train(tiny_config(steps=5), toy_dataset(16), progress=False)
    card = toy_card(r.architecture)
    save_model(tmp_path / "m", r.model, card)
    loaded, card2 = load_model(tmp_path / "m")
    x = torch.rand(3, 1, 16, 16)
    t = torch.tensor([0.01, 0.5, 0.9])
    y = torch.tensor([0, 1, 1])
    with torch.no_grad():
        assert torch.equal(r.model(x, t, y), loaded(x, t, y))
    assert len(card2["sha256"]) == 64


def test_warm_start_begins_from_the_saved_weights_and_refuses_another_network(
    tmp_path: Path,
) -> None:
    torch.set_num_threads(1)
    r = train(tiny_config(steps=5), toy_dataset(16), progress=False)
    card = toy_card(r.architecture)
    save_model(tmp_path / "m", r.model, card)
    # One step at a negligible rate: the EMA is still the saved network, not fresh weights.
    still = dict(steps=1, lr=1e-9)
    warm = train(
        tiny_config(**still, init_weights=str(tmp_path / "m")), toy_dataset(16), progress=False
    )
    cold = train(tiny_config(**still), toy_dataset(16), progress=False)
    x, t, y = torch.rand(2, 1, 16, 16), torch.tensor([0.1, 0.6]), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(warm.model(x, t, y), r.model(x, t, y), atol=1e-5)
        assert not torch.allclose(cold.model(x, t, y), r.model(x, t, y), atol=1e-2)
    with pytest.raises(ValueError, match="architecture"):
        train(
            tiny_config(width=16, init_weights=str(tmp_path / "m")), toy_dataset(16), progress=False
        )


def test_train_and_export_writes_a_calibrated_card_and_classifies(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    ds = toy_dataset(64)
    weights, card_path = train_and_export(
        tiny_config(steps=80), ds, tmp_path / "toy", progress=False, estimator={"k": 8}
    )
    card = json.loads(card_path.read_text())
    for key in (
        "name",
        "version",
        "sha256",
        "classes",
        "image_size",
        "channels",
        "preprocess",
        "sde",
        "architecture",
        "calibration",
        "operating_point",
        "positive_class",
        "ood",
        "metrics",
        "training",
    ):
        assert key in card, key
    assert card["positive_class"] == "malignant"
    assert card["calibration"]["temperature"] > 0
    assert 0.0 <= card["operating_point"]["threshold"] <= 1.0
    assert card["ood"]["fpr"] == 0.05
    assert card["training"]["class_counts"] == {"benign": 26, "malignant": 26}
    clf = load_classifier(weights)
    x, labels = ds.images[:8], ds.labels[:8]
    res = clf.classify(x)
    assert len(res) == 8
    for r in res:
        assert set(r.probabilities) == {"benign", "malignant"}
        assert sum(r.probabilities.values()) == pytest.approx(1.0)
        assert r.method == "elbo-uniform-stratified-k8"
        assert r.bits_per_dim > 0
    # Batch-independent: the same image alone gets the same answer as inside a batch.
    alone = clf.classify(x[3:4])[0]
    assert alone.probabilities == pytest.approx(res[3].probabilities, rel=1e-9)
    accuracy = (
        sum(r.predicted_class == ds.class_names[lab] for r, lab in zip(res, labels, strict=True))
        / 8
    )
    assert accuracy >= 0.75, [r.probabilities for r in res]
    # Pure noise is out of distribution for a model of discs and bars.
    noise = torch.rand(4, 1, 16, 16)
    assert all(r.ood for r in clf.classify(noise))


def test_random_flip_keeps_the_chest_wall_on_the_left():
    """Preprocessing puts every chest wall at column 0; the augmentation must keep it there
    (a left-right mirror would train on images serving never sees), and flip about half."""
    from sgc_core.train import random_flip

    x = torch.zeros(64, 1, 8, 8)
    x[:, :, :, 0] = 1.0  # the chest wall
    x[:, :, 0, 3] = 2.0  # a mark near the top, to see which images were flipped
    out = random_flip(x, torch.Generator().manual_seed(0))
    assert torch.all(out[:, :, :, 0] == 1.0)
    flipped = out[:, 0, -1, 3] == 2.0
    assert torch.equal(out[flipped], x[flipped].flip(-2))
    assert torch.equal(out[~flipped], x[~flipped])
    assert 16 <= int(flipped.sum()) <= 48


def test_the_classification_term_is_the_cross_entropy_of_the_window_scores() -> None:
    """class_ce_loss = CE of softmax_y(-1/2 sum |eps_hat_y - z|^2) under one shared (t, z)
    per image: recomputed here class by class with the same draws."""
    from sgc_core.sde import VPSDE, perturb
    from sgc_core.train import class_ce_loss
    from sgc_core.unet import architecture_spec, build_score_model

    torch.manual_seed(0)
    sde = VPSDE()
    model = build_score_model(architecture_spec("default", 3, 1, 16, 8), sde).eval()
    x, y = torch.rand(5, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 2, 1, 0])
    got = class_ce_loss(model, sde, x, y, 3, torch.Generator().manual_seed(7), (0.05, 0.3))
    gen = torch.Generator().manual_seed(7)
    t = (0.05 + 0.25 * torch.rand(5, generator=gen, dtype=torch.float64)).float()
    z = torch.randn(x.shape, generator=gen)
    xt = perturb(sde, x, t, z)
    sigma = sde.marginal_std(t)[:, None, None, None]
    scores = torch.stack(
        [
            -0.5 * (-sigma * model(xt, t, torch.full((5,), c)) - z).pow(2).sum((1, 2, 3))
            for c in range(3)
        ],
        dim=1,
    )
    want = torch.nn.functional.cross_entropy(scores, y)
    assert torch.allclose(got, want, rtol=1e-5), (got, want)
    assert float(t.min()) >= 0.05 and float(t.max()) <= 0.3


def test_the_classification_term_teaches_the_denoiser_to_rank_the_classes() -> None:
    """With the term, a few steps lower the window scores' cross-entropy on the training
    images more than DSM alone does: the gradient reaches the class conditioning."""
    from sgc_core.sde import VPSDE
    from sgc_core.train import class_ce_loss

    torch.set_num_threads(1)
    ds = toy_dataset(32)
    x = ds.images * 2 - 1
    y = torch.tensor(ds.labels)

    def ce(model) -> float:
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            return float(class_ce_loss(model, VPSDE(), x, y, 2, gen, (0.05, 0.5)))

    plain = train(tiny_config(steps=30), ds, progress=False)
    taught = train(tiny_config(steps=30, ce_weight=1.0), ds, progress=False)
    assert ce(taught.model) < 0.8 * ce(plain.model), (ce(taught.model), ce(plain.model))
