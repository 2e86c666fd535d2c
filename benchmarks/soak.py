"""Soak: small studies from concurrent senders into the node while its worker is SIGKILLed.

What it reports (tests/helpers/soak.py runs it; this script picks the stack and prints):
studies sent and acknowledged, studies with exactly one SR, duplicates, studies without an
SR, worker kills (and how many landed mid-classification), unexpected worker exits, whether
the SCP ever stopped, jobs by state, lost attempts, median / max time from a study's last
C-STORE response to its SR row. Exit status 0 only when every study got exactly one SR, no
job failed and the SCP never stopped.

The sends are spread over ``--duration`` seconds (the run then drains what is left); the
worker is killed every ``--kill-every`` seconds while studies arrive. The model is a real
tiny model trained through sgc_core in seconds (``--model`` takes another).

    .venv/bin/python -m benchmarks.soak --duration 600                  # 10 minutes, embedded
    nice -n 5 .venv/bin/python -m benchmarks.soak --duration 3600       # the recorded hour
    .venv/bin/python -m benchmarks.soak --duration 300 --stack redis+postgresql
    .venv/bin/python -m benchmarks.soak --duration 300 --serve          # sgc serve restarts it
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.latency import stack_database
from tests.helpers.soak import SoakConfig, run_soak
from tests.helpers.stacks import stack_settings
from tests.helpers.tiny_model import train_tiny_model

#: The soak model: 32 px and 16 ELBO samples, so a classification takes long enough on CPU
#: for a kill to land in it, and short enough that the node keeps up between kills.
SOAK_MODEL = {"image_size": 32, "k": 16}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds over which to send")
    p.add_argument("--studies", type=int, default=None, help="default: max(200, duration/6)")
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--kill-every", type=float, default=20.0)
    p.add_argument("--stack", choices=["embedded", "redis+postgresql"], default="embedded")
    p.add_argument("--lease", type=float, default=5.0, help="SGC_RESEND_AFTER of the node")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument(
        "--serve",
        action="store_true",
        help="run one `sgc serve` (its supervisor restarts the killed worker) instead of "
        "`sgc scp` + `sgc worker` restarted by the soak",
    )
    return p.parse_args()


def main() -> int:
    args = parse_args()
    studies = args.studies or max(200, int(args.duration / 6))
    stamp = lambda: datetime.now(UTC).strftime("%H:%M:%S")  # noqa: E731
    log = lambda msg: print(f"[{stamp()}] {msg}", flush=True)  # noqa: E731
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"# soak {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{os.cpu_count()} CPUs, load average {load}")  # fmt: skip
    print(f"# stack {args.stack}, {studies} studies from {args.senders} senders over "
          f"{args.duration:.0f} s, worker SIGKILL every {args.kill_every:.0f} s, "
          f"SGC_RESEND_AFTER {args.lease:g} s, "
          f"{'sgc serve' if args.serve else 'sgc scp + sgc worker (restarted by the soak)'}",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sgc-soak-") as tmp:
        folder = args.workdir or Path(tmp)
        model = args.model or train_tiny_model(folder / "model", **SOAK_MODEL)
        config = SoakConfig(
            studies=studies, senders=args.senders, kill_every=args.kill_every,
            send_over=args.duration, drain_timeout=max(600.0, args.duration / 4), serve=args.serve,
            node={"resend_after": args.lease, "stable_age": 3, "sweep_interval": 0.5,
                  "min_free_mb": 0},
        )  # fmt: skip
        began = time.monotonic()
        database = stack_database(args.stack, folder / "unused.db", "sgc_soak_", migrate=True)
        with database as url, stack_settings(url) as stack:
            config.node.update(stack)
            result = run_soak(folder, model, config, log=log)
    print(f"# finished after {time.monotonic() - began:.0f} s")
    print(result.figures(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
