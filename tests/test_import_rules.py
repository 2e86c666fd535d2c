"""The rooms' import rules (docs/architecture.md), read from the source with `ast`.

Why a test: the rules are what keep the SCP free of torch and the rooms free of the composition
root; a forbidden arrow added by accident would only show up as a slow SCP start or an import
cycle much later. Imports inside functions count too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Our own top-level packages; any other import is a third-party library.
OURS = ("sgc_config", "sgc_core", "db", "scp", "worker", "sgc_node")

#: room -> packages (ours and third-party) it must never import.
FORBIDDEN = {
    "sgc_config": {"sgc_core", "db", "scp", "worker", "sgc_node", "torch"},
    "sgc_core": {"scp", "worker", "db", "sgc_node", "sgc_config", "celery", "pynetdicom"},
    "db": {"sgc_core", "scp", "worker", "sgc_node", "torch"},
    "scp": {"sgc_core", "worker", "sgc_node", "torch", "highdicom"},
    "worker": {"scp", "sgc_node"},
}

#: room -> modules it may import although their package is forbidden above. sgc_config.atomic
#: is the node's one atomic-write helper; it imports only the standard library, so the ML
#: core's checkpoints use it without depending on the node's configuration.
EXCEPTIONS = {"sgc_core": ("sgc_config.atomic",)}


def _modules(room: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``room``."""
    out = {}
    for path in sorted((ROOT / room).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Our modules -> the modules of ours each imports (names that are modules only)."""
    modules = {name: path for room in OURS for name, path in _modules(room).items()}
    return {
        name: {imp for imp in _imports(name, path) if imp in modules and imp != name}
        for name, path in modules.items()
    }


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_room_never_imports_what_its_rule_forbids(room):
    bad = []
    for module, path in _modules(room).items():
        for name in _imports(module, path):
            top = name.split(".")[0]
            allowed = any(name == m or name.startswith(m + ".") for m in EXCEPTIONS.get(room, ()))
            if top in FORBIDDEN[room] and not allowed:
                bad.append(f"{module} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_among_our_modules():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_forbidden_arrow(tmp_path):
    """The parser resolves relative and lazy imports (else the rules above prove nothing)."""
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from ..worker import tasks\n    import torch\n")
    names = _imports("scp.sub.mod", src)
    assert {"scp.worker.tasks", "torch"} <= names or {"scp.worker", "torch"} <= names
    src.write_text("from sgc_node.settings import Settings\n")
    assert "sgc_node.settings" in _imports("scp.x", src)
