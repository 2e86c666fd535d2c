"""`sgc db ...`: schema management."""

from __future__ import annotations

import click

from sgc_node.cli import Context, pass_ctx


@click.group("db")
def db_group() -> None:
    """Manage the node's database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_ctx
def upgrade_cmd(ctx: Context, revision: str) -> None:
    """Apply migrations to SGC_DATABASE_URL (SQLite in the data directory by default)."""
    from db.session import current_revision, upgrade

    url = ctx.settings.resolved_database_url
    try:
        upgrade(url, revision)
    except Exception as exc:
        raise click.ClickException(f"cannot upgrade the database: {exc}") from None
    click.echo(f"database at revision {current_revision(url)}")


@db_group.command("current")
@pass_ctx
def current_cmd(ctx: Context) -> None:
    """Print the schema revision of the configured database."""
    from db.session import current_revision

    click.echo(current_revision(ctx.settings.resolved_database_url) or "empty")


COMMANDS = [db_group]
