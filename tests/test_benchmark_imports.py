"""Benchmarks run as modules from the repository root (`python -m benchmarks.X`).

Why a test: a script that puts the repository root on ``sys.path`` runs whatever tree it sits
in and hides a missing package; one that imports tests/conftest.py pulls in pytest's fixtures
and plugins as a side effect. What benchmarks and tests share lives in tests/helpers/ (e.g.
tests/helpers/services.py). The docs show the one way to run them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: A command line that runs a benchmark as a file instead of as a module.
SCRIPT_FORM = re.compile(r"python[\w./-]*\s+benchmarks/\w+\.py")


def reaches(source: str, filename: str = "<source>") -> list[str]:
    """Each ``sys.path`` edit and each import of tests.conftest in ``source`` (code only: a
    script held in a string for a child process is not this module's import path)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if (
                isinstance(target, ast.Attribute)
                and target.attr == "path"
                and isinstance(target.value, ast.Name)
                and target.value.id == "sys"
            ):
                found.append((node.lineno, f"sys.path.{node.func.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "tests.conftest":
            found.append((node.lineno, "from tests.conftest import"))
        elif isinstance(node, ast.Import) and any(a.name == "tests.conftest" for a in node.names):
            found.append((node.lineno, "import tests.conftest"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def test_no_benchmark_or_helper_reaches_for_the_root_or_conftest():
    files = sorted((ROOT / "benchmarks").glob("*.py")) + sorted(
        (ROOT / "tests" / "helpers").glob("*.py")
    )
    found = [
        line
        for path in files
        for line in reaches(path.read_text(), path.relative_to(ROOT).as_posix())
    ]
    assert not found, "run benchmarks with python -m; share code via tests/helpers:\n" + "\n".join(
        found
    )


def test_docs_show_benchmarks_as_modules():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts += sorted((ROOT / "benchmarks").glob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in texts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if SCRIPT_FORM.search(line)
    ]
    assert not found, "show `python -m benchmarks.X` instead:\n" + "\n".join(found)


def test_the_checks_see_what_they_should():
    source = (
        "import sys\nfrom pathlib import Path\n"
        "sys.path.insert(0, str(Path(__file__).parents[1]))\n"
        "from tests.conftest import free_port\n"
        "import tests.conftest\n"
        "def f():\n    sys.path.append('x')\n"
        "CHILD = 'import sys; sys.path.insert(0, sys.argv[1])'\n"
        "from tests.helpers.services import free_port\n"
    )
    assert reaches(source, "b.py") == [
        "b.py:3: sys.path.insert",
        "b.py:4: from tests.conftest import",
        "b.py:5: import tests.conftest",
        "b.py:7: sys.path.append",
    ]
    assert SCRIPT_FORM.search(".venv/bin/python benchmarks/load.py --quick")
    assert SCRIPT_FORM.search("nice -n 5 python3 benchmarks/soak.py")
    assert not SCRIPT_FORM.search(".venv/bin/python -m benchmarks.load --quick")
    assert not SCRIPT_FORM.search("`benchmarks/load.py` sends studies")
