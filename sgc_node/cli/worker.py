"""`sgc worker`: a Celery worker for the classify and/or deliver queues, with sane defaults."""

from __future__ import annotations

import os

import click

from sgc_node.cli import Context, pass_ctx

QUEUES = ("classify", "deliver")
POOLS = ("solo", "prefork", "threads")


def default_pool(queues: list[str]) -> str:
    """Classification runs one model per process on one device: ``solo``. Delivery is network
    I/O only: ``threads``."""
    return "solo" if "classify" in queues else "threads"


def worker_argv(queues: list[str], pool: str, concurrency: int | None, loglevel: str) -> list[str]:
    """The `celery worker` arguments `sgc worker` runs with."""
    if concurrency is None:
        concurrency = 1 if pool == "solo" else 4
    if pool == "solo" and concurrency != 1:
        raise click.UsageError("--pool solo runs exactly one task at a time (--concurrency 1)")
    return [
        "worker",
        "--queues",
        ",".join(queues),
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        # Unique per process: several workers (one per GPU) may share a host and a broker.
        "--hostname",
        f"sgc-{'-'.join(queues)}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


@click.command("worker")
@click.option(
    "-Q",
    "--queues",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues to consume: classify (GPU) and/or deliver (CPU).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Tasks at a time (default 1 for solo, 4 otherwise).",
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(POOLS),
    default=None,
    help="Execution pool (default: solo when consuming classify, else threads).",
)
@click.option(
    "--device",
    default=None,
    help="Torch device for classification: auto, cpu, cuda:N (overrides SGC_DEVICE).",
)
@pass_ctx
def worker_cmd(
    ctx: Context, queues: str, concurrency: int | None, pool: str | None, device: str | None
) -> None:
    """Run a worker: classify studies (load the model once, classify, write the SR) and/or
    deliver SRs to SGC_ARCHIVE. Production: one `sgc worker -Q classify` per GPU
    (SGC_DEVICE=cuda:N) and CPU workers with `-Q deliver`, all on one SGC_BROKER_URL."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise click.UsageError(f"--queues must name classify and/or deliver, got {queues!r}")
    if device is not None:
        os.environ["SGC_DEVICE"] = device
        ctx._settings = None  # re-read with the override (validated like the variable)
    settings = ctx.settings
    from sgc_config.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    if "classify" in names:
        from worker.runtime import ModelUnavailable, resolve_device

        try:
            resolve_device(settings.device)
        except ModelUnavailable as exc:
            raise click.ClickException(str(exc)) from None
    from sgc_node.metrics import start_metrics_server
    from worker.celery_app import make_celery

    start_metrics_server(
        settings.metrics_host, settings.metrics_port, settings.resolved_database_url
    )
    app = make_celery(settings)
    argv = worker_argv(names, pool or default_pool(names), concurrency, settings.log_level)
    app.worker_main(argv=argv)


COMMANDS = [worker_cmd]
