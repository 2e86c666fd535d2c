"""The one atomic-write helper (sgc_config/atomic.py): old or new file, never a torn one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sgc_config import atomic


def test_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "card.json"
    atomic.write_atomic(target, "one")
    atomic.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["card.json"]


def test_a_failing_writer_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic.replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_every_step_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file before the rename, the folder after it: what the checkpoint writer lacked."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic.write_atomic(tmp_path / "x", b"data")
    assert events == ["file", "rename", "dir"]


def test_the_helper_imports_only_the_standard_library() -> None:
    """The ML core may import it (tests/test_import_rules.py) only because of this."""
    import ast
    import sys

    tree = ast.parse(Path(atomic.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {n.split(".")[0] for n in names} <= set(sys.stdlib_module_names) | {"__future__"}
