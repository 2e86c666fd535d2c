"""`sgc web`: run the STOW-RS (DICOMweb) door on its own."""

from __future__ import annotations

import click

from sgc_node.cli import Context, pass_ctx, prepare_service


@click.command("web")
@click.option("--port", type=int, default=None, help="Port (default SGC_WEB_PORT).")
@pass_ctx
def web_cmd(ctx: Context, port: int | None) -> None:
    """Receive studies over DICOMweb STOW-RS (POST /studies) and store them as the SCP does.

    Listens on SGC_WEB_HOST:SGC_WEB_PORT (loopback unless configured), asks for
    SGC_WEB_TOKEN when set and for client certificates when SGC_WEB_TLS_CA is set. The
    SCP's sweeper (`sgc scp` or `sgc serve`) settles the studies and queues the jobs.
    """
    settings = ctx.settings
    if port is not None:
        settings = settings.model_copy(update={"web_port": port})
    if not settings.web_port:
        raise click.ClickException("no port: set SGC_WEB_PORT or pass --port")
    prepare_service(settings)
    from scp.web.server import serve_web

    try:
        serve_web(settings)
    except OSError as exc:
        raise click.ClickException(f"cannot start the STOW-RS door: {exc}") from None


COMMANDS = [web_cmd]
