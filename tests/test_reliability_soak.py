"""Soak: small studies from 4 concurrent senders while the worker is SIGKILLed again and again.

Every study sent must get exactly one SR, no job may fail, and the SCP must never stop
(tests/helpers/soak.py runs the node and the kills; benchmarks/soak.py is the same run as a
script with figures, recorded for an hour in docs/reliability.md). The default run is short
and on the embedded default; the ``long`` variant is the full soak: 200 studies with a
kill about every 20 s, on the embedded default and on Redis + PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.soak import SoakConfig, SoakResult, run_soak
from tests.helpers.stacks import stack_settings
from tests.helpers.tiny_model import train_tiny_model

pytestmark = pytest.mark.slow
NODE = {"resend_after": 5, "stable_age": 3, "sweep_interval": 0.5, "min_free_mb": 0}


@pytest.fixture(scope="session")
def soak_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 px and 16 ELBO samples: a classification is long enough for a kill to land in it."""
    return train_tiny_model(tmp_path_factory.getbasetemp() / "soak-model", image_size=32, k=16)


def _check(result: SoakResult, studies: int, min_kills: int) -> None:
    print(result.figures())
    assert result.sent == result.acked == studies, "every study acknowledged"
    assert result.scp_exit is None, "the node (sgc scp or sgc serve) never stops"
    assert result.kills >= min_kills and result.kills_mid_classification >= 1
    assert result.missing == 0, "every study has an SR"
    assert result.duplicates == 0, "no study has two"
    assert result.jobs == {"done": studies}, "no job failed, none left open"
    assert result.ok


def test_short_soak_on_the_embedded_default(tmp_path: Path, soak_model: Path) -> None:
    config = SoakConfig(
        studies=40, senders=4, kill_every=10.0, max_kills=2, send_over=30.0,
        drain_timeout=150.0, node=dict(NODE),
    )  # fmt: skip
    _check(run_soak(tmp_path, soak_model, config), studies=40, min_kills=2)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_soak_200_studies_with_a_kill_every_20_s(
    tmp_path: Path, soak_model: Path, database_url: str
) -> None:
    with stack_settings(database_url) as stack:
        config = SoakConfig(
            studies=200, senders=4, kill_every=20.0, send_over=600.0, drain_timeout=600.0,
            node={**NODE, **stack},
        )  # fmt: skip
        _check(run_soak(tmp_path, soak_model, config), studies=200, min_kills=20)


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_soak_under_sgc_serve_which_restarts_the_worker(tmp_path: Path, soak_model: Path) -> None:
    """The node as `make run` starts it: one `sgc serve`, whose supervisor brings the killed
    worker back (sgc_node/supervise.py); the node must never stop. Fewer kills land than every
    20 s: a worker that exits within a minute of its start comes back after a backoff that
    grows to 30 s, and a kill waits for it to be classifying again (16 in the recorded run)."""
    config = SoakConfig(
        studies=200, senders=4, kill_every=20.0, send_over=600.0, drain_timeout=600.0,
        node=dict(NODE), serve=True,
    )  # fmt: skip
    _check(run_soak(tmp_path, soak_model, config), studies=200, min_kills=10)
