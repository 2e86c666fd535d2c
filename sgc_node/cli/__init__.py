"""The `sgc` command: one entry point, one subcommand module per concern.

Subcommand modules import their heavy dependencies (torch, celery, pynetdicom) inside the
command functions, so `sgc --help` and the SCP start fast and the SCP never loads torch.
"""

from __future__ import annotations

import click

from sgc_config.settings import Settings, SettingsError, load_settings
from sgc_node import __version__


class ConfigError(click.ClickException):
    """Invalid SGC_* configuration: printed as one line, exit status 2."""

    exit_code = 2


class Context:
    """Lazily loaded settings shared by the subcommands."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except SettingsError as exc:
                raise ConfigError(str(exc)) from None
        return self._settings


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def prepare_service(settings: Settings) -> None:
    """What a long-running command does first: log as configured, then migrate the database
    (a failure is one line and a non-zero exit, before any port is opened)."""
    from db.session import upgrade
    from sgc_config.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    try:
        upgrade(settings.resolved_database_url)
    except Exception as exc:
        raise click.ClickException(f"cannot upgrade the database: {exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sgc")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """sgc-node: a DICOM node that classifies mammograms with a score-based generative
    classifier and sends a DICOM Structured Report back to the archive.

    Configuration comes from SGC_* environment variables (see the README's table).
    """
    ctx.ensure_object(Context)


# Each subcommand module exposes COMMANDS (tests/test_cli.py checks that every one is listed).
SUBCOMMAND_MODULES = (
    "config",
    "db",
    "scp",
    "web",
    "worker",
    "serve",
    "status",
    "send",
    "classify",
    "viewer",
    "demo",
    "ml",
    "lesion",
    "data",
)


def _register() -> None:
    """Add every module's commands; a listed module that is missing fails loudly."""
    import importlib

    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"sgc_node.cli.{name}")
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """The ``sgc`` entry point (settings errors surface as :class:`ConfigError`, exit 2)."""
    cli.main(prog_name="sgc", standalone_mode=True)
