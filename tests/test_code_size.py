"""Size limits of the non-test code, read from the source with `ast`: no function over 60 lines,
no file over 400 lines.

Why a test: a long function mixes steps that want a name and a docstring each, and a long file
mixes jobs that want a module each; both grow one small change at a time, so only a check on
every run keeps them small. Database migrations are exempt (a schema is one long list), and so
are the tests themselves.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The folders of non-test code the limits apply to.
CHECKED = ("scp", "worker", "sgc_core", "sgc_config", "sgc_node", "db", "benchmarks")
#: Paths (relative to the repository root) below which nothing is checked.
EXEMPT = ("db/migrations",)

MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400

#: What is over a limit today, each at most at its size when this list was written: an entry
#: may shrink (then lower or remove it), never grow. "path" is a whole file's line count,
#: "path::name" a function's. Only code that another engineer was still changing when the
#: limits came in belongs here; remove an entry as soon as its code is split.
ALLOWED: dict[str, int] = {}


@dataclass(frozen=True)
class Oversize:
    """One thing over its limit: ``key`` as in ALLOWED, its size in lines."""

    key: str
    lines: int


def oversize(source: str, path: str) -> list[Oversize]:
    """Every function (methods and nested ones too) over MAX_FUNCTION_LINES and the file if it
    is over MAX_FILE_LINES. A function's lines run from its ``def`` to its last line, so
    decorators do not count and a docstring does."""
    found = []
    lines = len(source.splitlines())
    if lines > MAX_FILE_LINES:
        found.append(Oversize(path, lines))
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(Oversize(f"{path}::{node.name}", length))
    return found


def checked_files(root: Path = ROOT) -> list[Path]:
    """The .py files of the CHECKED folders, without the EXEMPT ones."""
    files = []
    for folder in CHECKED:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if not any(rel == e or rel.startswith(e + "/") for e in EXEMPT):
                files.append(path)
    return files


def violations(root: Path = ROOT, allowed: dict[str, int] = ALLOWED) -> list[str]:
    """What breaks the limits, beyond what ``allowed`` lets through, as readable lines."""
    out = []
    for path in checked_files(root):
        rel = path.relative_to(root).as_posix()
        for item in oversize(path.read_text(), rel):
            limit = allowed.get(item.key)
            if limit is None:
                kind = "function" if "::" in item.key else "file"
                cap = MAX_FUNCTION_LINES if "::" in item.key else MAX_FILE_LINES
                out.append(f"{item.key}: {kind} of {item.lines} lines (limit {cap})")
            elif item.lines > limit:
                out.append(f"{item.key}: {item.lines} lines, grew past its allowance of {limit}")
    return out


def stale_allowances(root: Path = ROOT, allowed: dict[str, int] = ALLOWED) -> list[str]:
    """Entries of ``allowed`` whose code is now within the limits (or gone): to be removed."""
    over = {
        item.key
        for path in checked_files(root)
        for item in oversize(path.read_text(), path.relative_to(root).as_posix())
    }
    return sorted(key for key in allowed if key not in over)


def test_no_function_or_file_over_the_limits():
    found = violations()
    assert not found, (
        "split these into smaller functions or modules (docstrings that say why):\n"
        + "\n".join(found)
    )


def test_every_allowance_is_still_needed():
    stale = stale_allowances()
    assert not stale, f"within the limits now: remove from ALLOWED in {__file__}: {stale}"


# --- the checker itself, on small synthetic sources ---------------------------------------------


def _function(name: str, body_lines: int, indent: str = "") -> str:
    """A function whose def-to-end span is ``body_lines`` + 1 lines."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}def {name}():\n{body}"


def test_checker_finds_a_long_function_a_long_method_and_a_long_file():
    source = (
        _function("short", MAX_FUNCTION_LINES - 1)
        + _function("exactly_at_the_limit", MAX_FUNCTION_LINES - 1)
        + _function("too_long", MAX_FUNCTION_LINES)
        + "class C:\n"
        + _function("long_method", MAX_FUNCTION_LINES + 5, indent="    ")
        + "async def g():\n    def inner():\n"
        + "".join(f"        y{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    )
    found = {item.key: item.lines for item in oversize(source, "m.py")}
    assert found == {
        "m.py::too_long": MAX_FUNCTION_LINES + 1,
        "m.py::long_method": MAX_FUNCTION_LINES + 6,
        "m.py::g": MAX_FUNCTION_LINES + 2,
        "m.py::inner": MAX_FUNCTION_LINES + 1,
    }
    lines = "".join(f"v{i} = {i}\n" for i in range(MAX_FILE_LINES + 1))
    assert oversize(lines, "big.py") == [Oversize("big.py", MAX_FILE_LINES + 1)]
    assert oversize(lines[: lines.index(f"v{MAX_FILE_LINES} =")], "ok.py") == []


def test_decorators_do_not_count_but_a_docstring_does():
    decorated = "@a\n@b\n@c\n" + _function("f", MAX_FUNCTION_LINES - 1)
    assert oversize(decorated, "d.py") == []
    with_doc = 'def f():\n    """Doc."""\n' + "".join(
        f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1)
    )
    assert [item.key for item in oversize(with_doc, "d.py")] == ["d.py::f"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small repository: one long function in sgc_core, a long migration, a long test."""
    (tmp_path / "sgc_core").mkdir()
    (tmp_path / "sgc_core" / "m.py").write_text(_function("long", MAX_FUNCTION_LINES + 1))
    (tmp_path / "db" / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "db" / "migrations" / "versions" / "0001.py").write_text(_function("upgrade", 300))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(_function("test_long", 300))
    return tmp_path


def test_checker_skips_migrations_and_tests_and_honours_the_allowances(tree: Path):
    assert violations(tree, {}) == [
        f"sgc_core/m.py::long: function of {MAX_FUNCTION_LINES + 2} lines "
        f"(limit {MAX_FUNCTION_LINES})"
    ]
    assert violations(tree, {"sgc_core/m.py::long": MAX_FUNCTION_LINES + 2}) == []
    grown = violations(tree, {"sgc_core/m.py::long": MAX_FUNCTION_LINES + 1})
    assert grown == [
        f"sgc_core/m.py::long: {MAX_FUNCTION_LINES + 2} lines, grew past its allowance "
        f"of {MAX_FUNCTION_LINES + 1}"
    ]
    allowed = {"sgc_core/m.py::long": 99, "sgc_core/gone.py": 500}
    assert stale_allowances(tree, allowed) == ["sgc_core/gone.py"]
