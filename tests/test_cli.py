"""The `sgc` command: help texts and configuration errors as a user meets them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sgc_node.cli import SUBCOMMAND_MODULES, cli

SGC = [sys.executable, "-m", "sgc_node"]


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SGC_")}
    full_env.update(env or {})
    return subprocess.run(SGC + args, capture_output=True, text=True, env=full_env, timeout=120)


def test_help_lists_every_subcommand_with_a_summary() -> None:
    out = _run(["--help"])
    assert out.returncode == 0
    for name, command in cli.commands.items():
        assert name in out.stdout
        assert command.get_short_help_str(), f"sgc {name} has no help"
        sub = _run([name, "--help"])
        assert sub.returncode == 0, sub.stderr


def test_every_command_module_is_registered() -> None:
    """A module in sgc_node/cli/ that the loader does not list would drop its commands
    silently; a listed module that is missing fails at import (the loader skips nothing)."""
    folder = Path(__file__).resolve().parents[1] / "sgc_node" / "cli"
    on_disk = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    assert on_disk == set(SUBCOMMAND_MODULES)
    import importlib

    for name in SUBCOMMAND_MODULES:
        for command in importlib.import_module(f"sgc_node.cli.{name}").COMMANDS:
            assert cli.commands[command.name] is command


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    out = _run(["db", "upgrade"], {"SGC_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "database at revision" in out.stdout
    assert (tmp_path / "sgc.db").exists()


def test_invalid_configuration_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    out = _run(["db", "upgrade"], {"SGC_DATA_DIR": str(tmp_path), "SGC_ARCHIVE": "nonsense"})
    assert out.returncode == 2
    assert "SGC_ARCHIVE" in out.stderr and "AET@host:port" in out.stderr
    assert "Traceback" not in out.stderr


def test_readme_configuration_table_is_in_sync_with_the_settings() -> None:
    from sgc_node.config_table import BEGIN, END, markdown_table

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == markdown_table(), "run `sgc config --markdown` into the README"


def test_config_hides_database_passwords(tmp_path: Path) -> None:
    url = "postgresql+psycopg://sgc:s3cret@db.example/sgc"
    out = _run(["config"], {"SGC_DATA_DIR": str(tmp_path), "SGC_DATABASE_URL": url})
    assert out.returncode == 0, out.stderr
    assert "s3cret" not in out.stdout and "db.example" in out.stdout
