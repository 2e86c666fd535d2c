"""benchmarks/gpu.py stays runnable where no GPU is lent: its smoke run on the CPU.

Why: the script is meant to be run once on a lent GPU, with no time to debug it there. The
smoke run takes every path (both view models, the native-resolution finder, the paper-size
network under our ELBO and under the paper's RK45 rule, training steps) at tiny sizes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.lesion_model import write_lesion_model
from tests.helpers.tiny_model import train_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--tiny", "--repeats", "1"]
    cmd += ["--lesion-model", str(write_lesion_model(tmp_path / "lesion"))]
    cmd += ["--view-model", str(train_tiny_model(tmp_path / "tiny")), "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures["per_study_seconds"]) == {
        "lesion finder",
        "whole-view",
        "lesion finder, native",
    }
    assert all(v > 0 for v in figures["per_study_seconds"].values())
    paper = figures["paper_size"]
    assert paper["paper_rule_nfe_per_class"] > 16  # an adaptive solve, not our 16 ELBO calls
    assert paper["paper_rule_seconds_per_study"] > paper["elbo_seconds_per_study"] > 0
    assert len(figures["train_steps_per_second"]) == 3
    assert "goal >= 1000 studies/h" in done.stdout


@pytest.mark.parametrize(
    "argv, env, says",
    [
        ([], {}, "usage:"),
        (["run"], {"OUT": ""}, "set OUT"),
    ],
)
def test_the_device_training_script_refuses_a_call_it_cannot_serve(argv, env, says) -> None:
    """benchmarks/device_lesion.sh (the GPU recipe sized to a lease) says what is missing,
    in one line and with a non-zero exit, before it spends any of a lent device's time."""
    import os

    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks/device_lesion.sh"), *argv],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and says in run.stderr
