"""The classifier's CPU path: the memory budget and the kept allocator memory change speed,
never a result.

Why exact equality: chunking the (image x class x K) rows differently and running under
inference mode must give the numbers the worker gave before; the noise is seeded per call and
shared by every image of a batch, so a result does not depend on how rows are grouped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sgc_core.batching import forward_rows, model_width, retain_freed_memory
from sgc_core.inference import load_classifier
from sgc_core.synth.study import generate_study
from sgc_core.unet import upsample_cat
from sgc_core.view_model import load_view_model
from tests.helpers.lesion_model import write_lesion_model

MODELS = Path(__file__).resolve().parents[1] / "sgc_core" / "models"


def test_budget_sets_the_rows_of_one_forward_call() -> None:
    # 20 maps of 4 x 16 x 64 x 64 bytes = 5 MiB per row (the measured 4.4-5.3 MB)
    assert forward_rows(16, 64, 512) == 102
    assert forward_rows(16, 64, 512, cap=64) == 64
    assert forward_rows(16, 64, 1) == 1  # never zero rows
    assert forward_rows(32, 64, 512) == 51
    with pytest.raises(ValueError, match="positive"):
        forward_rows(16, 64, 0)


def test_the_allocator_keeps_freed_memory_on_glibc() -> None:
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True  # once per process, then the same answer


def test_whole_view_results_do_not_depend_on_the_budget() -> None:
    """The default budget gives the worker's old results bit for bit; a tiny one (3 rows per
    call, other convolution kernels) agrees to float32 rounding, with the same decisions."""
    x = torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    weights = MODELS / "sgc-demo-mammo.safetensors"
    old = load_classifier(weights, memory_mb=4096)  # the card's max_batch (256), as before
    default = load_classifier(weights)  # 512 MiB: 102 rows per call
    tiny = load_classifier(weights, memory_mb=16)
    assert (old.rows, default.rows, tiny.rows) == (256, 102, 3)
    assert model_width(old.model) == 16
    reference = old.classify(x)
    assert default.classify(x) == reference  # dataclass equality: every float bit for bit
    assert default.classify(x[5:6])[0] == reference[5]  # and not on the batch either
    for a, b in zip(tiny.classify(x), reference, strict=True):
        assert a.predicted_class == b.predicted_class and a.ood == b.ood
        for c in a.log_likelihoods:
            # float32 rounding of other kernels: a clean-clone CI run differed by 1.4e-6
            assert a.log_likelihoods[c] == pytest.approx(b.log_likelihoods[c], rel=1e-6)
            # The log-likelihoods (~ -6700 nats) differ by up to ~1e-4 nats (an AMD EPYC
            # host); a probability moves by p(1 - p) times the change of their difference.
            assert a.probabilities[c] == pytest.approx(b.probabilities[c], abs=1e-4)


def test_lesion_finder_results_do_not_depend_on_the_budget(tmp_path: Path) -> None:
    weights = write_lesion_model(tmp_path)
    view = generate_study(3)[0]
    small = load_view_model(weights, memory_mb=16)
    large = load_view_model(weights, memory_mb=4096)
    assert small.scanner.rows < large.scanner.rows
    (a,), (b,) = small.classify([view]), large.classify([view])
    # Other batch sizes run other float32 kernels: the same decisions and places, numbers
    # equal to rounding (a clean-clone CI run differed in the 6th significant digit).
    assert a.predicted_class == b.predicted_class and a.ood == b.ood
    assert a.p_malignant == pytest.approx(b.p_malignant, rel=1e-4)
    assert [f.label for f in a.findings] == [f.label for f in b.findings]
    for fa, fb in zip(a.findings, b.findings, strict=True):
        assert fa.p_malignant == pytest.approx(fb.p_malignant, rel=1e-4, abs=1e-9)
        assert np.allclose(fa.centre, fb.centre, atol=1.0)
    assert np.allclose(a.evidence.values, b.evidence.values, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    ("small", "large"), [((7, 9), (14, 18)), ((7, 9), (7, 9)), ((7, 9), (15, 18))]
)
def test_upsample_cat_equals_interpolate_then_cat(layout, small, large) -> None:
    """The decoder's fused upsample-and-concatenate gives interpolate + cat bit for bit, in
    both memory layouts, and for sizes that are not twice the input (the plain path)."""
    g = torch.Generator().manual_seed(2)
    h = torch.randn(3, 5, *small, generator=g).contiguous(memory_format=layout)
    skip = torch.randn(3, 4, *large, generator=g).contiguous(memory_format=layout)
    up = h if small == large else F.interpolate(h, size=large, mode="nearest")
    assert torch.equal(upsample_cat(h, skip), torch.cat([up, skip], dim=1))
    # Under autocast the two halves can differ in dtype; the result's is torch.cat's.
    half = h.to(torch.bfloat16)
    up = half if small == large else F.interpolate(half, size=large, mode="nearest")
    assert torch.equal(upsample_cat(half, skip), torch.cat([up, skip], dim=1))


# Records OMP_WAIT_POLICY at the moment torch is first imported, then runs the given code.
_AT_TORCH_IMPORT = """
import importlib.abc, os, sys
seen = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY"))
        return None
sys.meta_path.insert(0, Spy())
exec(sys.argv[1])
print(seen[0] if seen else "torch not imported")
"""


def _wait_policy_at_torch_import(code: str, policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, "-c", _AT_TORCH_IMPORT, code]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=120)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "code",
    [
        # `sgc worker` checks the device before Celery starts, then loads the model
        "from worker.runtime import resolve_device; resolve_device('cpu')",
        "from worker.offline import classify_files",  # sgc classify
        "from sgc_core.view_model import load_view_model",
    ],
)
def test_torch_threads_sleep_while_they_wait(code: str) -> None:
    """Spinning OpenMP threads lost a core's worth of time to a busy neighbour (docs/
    benchmarks.md, "CPU path"); OpenMP reads the policy once, when torch loads, so it must be
    set before that in every process that classifies, and a user's own value must win."""
    assert _wait_policy_at_torch_import(code, None) == "PASSIVE"
    assert _wait_policy_at_torch_import(code, "ACTIVE") == "ACTIVE"


def test_benchmark_refuses_a_models_folder_without_both_models(tmp_path: Path) -> None:
    from benchmarks import classifier_cpu

    argv = ["--before", str(tmp_path), "--models", str(tmp_path)]
    with pytest.raises(SystemExit, match="missing sgc-lesion-mammo.safetensors"):
        classifier_cpu.main(argv)
