"""The model-quality benchmark's data plumbing: nested, stratified training subsets."""

from __future__ import annotations

import pytest

from benchmarks.model_quality import nested_order, parse_args


def test_nested_order_is_a_permutation_with_stratified_prefixes():
    labels = [1] * 30 + [0] * 70
    order = nested_order(labels, seed=0)
    assert sorted(order) == list(range(100))
    for n in (10, 20, 50):
        positives = sum(labels[i] for i in order[:n])
        assert abs(positives - 0.3 * n) <= 1


def test_nested_order_is_seeded():
    labels = [i % 3 == 0 for i in range(60)]
    labels = [int(v) for v in labels]
    assert nested_order(labels, 1) == nested_order(labels, 1)
    assert nested_order(labels, 1) != nested_order(labels, 2)


@pytest.mark.parametrize("argv", [[], ["--steps", "37", "--batch-size", "5", "--seed", "3"]])
def test_both_models_train_on_the_same_budget(argv):
    """Steps, batch size, seed and class balancing reach both trainers equal, whatever the
    flags: the benchmark's comparison is only fair on an equal budget."""
    from benchmarks.model_quality import cnn_config, sgc_config

    args = parse_args(argv)
    cnn, sgc = cnn_config(args), sgc_config(args)
    for key in ("steps", "batch_size", "seed", "balanced", "image_size"):
        assert getattr(cnn, key) == getattr(sgc, key), key
    assert (sgc.steps, sgc.batch_size) == (args.steps, args.batch_size)
    assert args.models == "cnn,sgc"


def test_ratios_compare_each_n_with_the_peer_of_the_same_run(capsys):
    from benchmarks.model_quality import print_ratios

    print_ratios(
        [
            {"n": 100, "model": "cnn", "auc": 0.5},
            {"n": 100, "model": "sgc", "auc": 0.6},
            {"n": 300, "model": "cnn", "auc": 0.8},
        ]
    )
    out = capsys.readouterr().out
    assert "N   100: SGC / CNN test AUC ratio 1.200 (difference +0.100)" in out
    assert "N   300" not in out  # no SGC at that N: nothing to compare
