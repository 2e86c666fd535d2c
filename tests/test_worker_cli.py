"""`sgc worker`: bad options fail early with a clear message, before any broker connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sgc_node.cli.worker import default_pool, worker_argv


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    env["SGC_DATA_DIR"] = str(tmp / "data")
    return subprocess.run(
        [sys.executable, "-m", "sgc_node", "worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_unknown_queue_is_a_usage_error(tmp_path: Path) -> None:
    out = _run(["-Q", "classify,bogus"], tmp_path)
    assert out.returncode == 2 and "classify and/or deliver" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_gpu_is_reported_clearly(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():  # pragma: no cover - this check is for CPU machines
        return
    out = _run(["-Q", "classify", "--device", "cuda:3"], tmp_path)
    assert out.returncode == 1 and "no CUDA GPU" in out.stderr
    assert "Traceback" not in out.stderr


def test_defaults_follow_the_queues() -> None:
    assert default_pool(["classify"]) == "solo"
    assert default_pool(["deliver"]) == "threads"
    argv = worker_argv(["classify", "deliver"], "solo", None, "INFO")
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--queues") + 1] == "classify,deliver"
