"""`sgc serve`: the whole node in one command (SCP + sweeper, a classify and a deliver worker)."""

from __future__ import annotations

import logging
import os
import sys

import click

from sgc_node.cli import Context, pass_ctx


@click.command("serve")
@click.option("--no-worker", is_flag=True, help="Start only the SCP (workers run elsewhere).")
@pass_ctx
def serve_cmd(ctx: Context, no_worker: bool) -> None:
    """Run the node: migrate the database, then start the SCP, a classify worker and a
    deliver worker (and the STOW-RS door when SGC_WEB_PORT is set).

    On the embedded default (no SGC_DATABASE_URL / SGC_BROKER_URL) everything lives under
    SGC_DATA_DIR: SQLite, the filesystem broker and the received files. A child that exits
    is restarted with backoff; a crash loop (5 exits of one child within 60 s) stops the node
    with its reason and status 1. Ctrl-C or SIGTERM stops all, also in a background job.
    """
    from db.session import upgrade
    from sgc_config.logs import configure_logging
    from sgc_node.metrics import prepare_multiprocess_dir
    from sgc_node.supervise import Child, run_children, sgc_argv

    settings = ctx.settings
    configure_logging(settings.log_level, settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        upgrade(settings.resolved_database_url)
    except Exception as exc:
        raise click.ClickException(f"cannot prepare the database: {exc}") from None
    env = dict(os.environ)
    # Both children count into one directory; the SCP's /metrics endpoint serves the sum.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(
        prepare_multiprocess_dir(settings.data_dir.resolve() / "metrics")
    )
    children = [Child("scp", sgc_argv("scp"))]
    if settings.web_port:  # the STOW-RS door, a process of its own like the SCP
        children.append(Child("web", sgc_argv("web")))
    if not no_worker:
        # Two workers: a classification takes seconds to minutes on a CPU, and a finished
        # study's reports must not wait behind every classification still queued.
        for name, queue in (("worker", "classify"), ("deliver", "deliver")):
            argv = sgc_argv("worker", "--queues", queue, "--pool", "solo")
            children.append(Child(name, argv, env={"SGC_METRICS_PORT": "0"}))
    logging.getLogger("sgc.serve").info(
        "sgc-node: %s on port %d, data in %s",
        settings.ae_title,
        settings.port,
        settings.data_dir.resolve(),
    )
    outcome = run_children(children, env)
    if outcome.reason:
        raise click.ClickException(outcome.reason)
    sys.exit(outcome.status)


COMMANDS = [serve_cmd]
