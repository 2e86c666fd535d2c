"""`sgc scp`: run the DICOM C-STORE/C-ECHO SCP with its settle/outbox sweeper."""

from __future__ import annotations

import click

from sgc_node.cli import Context, pass_ctx, prepare_service


@click.command("scp")
@pass_ctx
def scp_cmd(ctx: Context) -> None:
    """Receive studies over DICOM (C-STORE) and queue settled studies for classification.

    Listens on SGC_HOST:SGC_PORT as SGC_AE_TITLE, stores files under SGC_STORAGE_DIR,
    applies database migrations first, and stops cleanly on Ctrl-C or SIGTERM.
    """
    settings = ctx.settings
    from sgc_node.metrics import start_metrics_server

    prepare_service(settings)
    from scp.server import serve

    try:
        start_metrics_server(
            settings.metrics_host, settings.metrics_port, settings.resolved_database_url
        )
        serve(settings)
    except OSError as exc:  # e.g. the port is taken or TLS files cannot be read
        raise click.ClickException(f"cannot start the SCP: {exc}") from None


COMMANDS = [scp_cmd]
