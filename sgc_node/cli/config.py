"""`sgc config`: show the effective configuration (or the README's table)."""

from __future__ import annotations

import json

import click

from sgc_node.cli import Context, pass_ctx


@click.command("config")
@click.option("--markdown", is_flag=True, help="Print the documentation table of all settings.")
@pass_ctx
def config_cmd(ctx: Context, markdown: bool) -> None:
    """Print the effective SGC_* configuration as JSON (validates it too)."""
    if markdown:
        from sgc_node.config_table import markdown_table

        click.echo(markdown_table())
        return
    s = ctx.settings
    data = json.loads(s.model_dump_json())
    from sqlalchemy.engine import make_url

    url = make_url(s.resolved_database_url).render_as_string(hide_password=True)
    data["database_url"] = url if s.database_url else None
    data["resolved_database_url"] = url
    data["resolved_broker_url"] = s.resolved_broker_url
    data["resolved_storage_dir"] = str(s.resolved_storage_dir)
    click.echo(json.dumps(data, indent=2))


COMMANDS = [config_cmd]
