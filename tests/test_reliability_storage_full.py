"""Fault 6: the storage volume fills up under a running `sgc scp` (a real, small tmpfs).

Two ways to run out: the disk really is full (ENOSPC while spooling or writing: 0xA700, the
association survives, nothing stored is touched, and storing resumes once space returns), and
the free-space watermark ``SGC_MIN_FREE_MB``: below it, associations that propose storage are
rejected at negotiation (A-ASSOCIATE-RJ, transient, local-limit-exceeded) while C-ECHO still
answers; above it again they are accepted, without a restart.

tests/test_scp_store.py already covers the per-instance watermark (0xA700 in-process) and an
unwritable storage directory; this file adds the real full volume and the association gate.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from db.models import Instance
from scp import statuses
from scp.storage import dataset_sha256
from tests.conftest import free_port, require_binary
from tests.helpers.mg import MGSpec, write_mg
from tests.helpers.nodeproc import NodeProcesses, count_rows, storescu
from tests.helpers.scpnode import scu_association, send_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

VOLUME_MB = 24
IMAGE = {"rows": 1024, "cols": 512}  # ~1 MiB per instance


@contextlib.contextmanager
def small_volume(mountpoint: Path, size_mb: int) -> Iterator[Path]:
    mountpoint.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(folder: Path, leave_mb: float = 0.0) -> Path:
    """Write a filler file until the volume has ``leave_mb`` MiB free (0: until ENOSPC)."""
    filler = folder / f"filler-{len(list(folder.glob('filler-*')))}"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb") as fp:
        try:
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave_mb * 2**20:
                fp.write(chunk)
                fp.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_full_volume_answers_a700_keeps_data_and_recovers(tmp_path: Path) -> None:
    spec = [MGSpec(seed=i, **IMAGE) for i in range(6)]
    files = [write_mg(tmp_path / f"{i}.dcm", s) for i, s in enumerate(spec)]
    with small_volume(tmp_path / "vol", VOLUME_MB) as vol:
        node = NodeProcesses.create(
            tmp_path / "node", port=free_port(), storage_dir=vol / "storage", min_free_mb=0
        )
        try:
            node.start_scp()
            sessions = node.sessions()
            with scu_association(node.port, [ExplicitVRLittleEndian]) as assoc:
                for path in files[:3]:
                    assert send_file(assoc, path).Status == statuses.SUCCESS
                stored = {p: p.read_bytes() for p in (vol / "storage").rglob("*.dcm")}
                filler = fill(vol)  # the disk is now really full (ENOSPC)
                rsp = send_file(assoc, files[3])
                assert rsp.Status == statuses.OUT_OF_RESOURCES, hex(rsp.Status)
                assert "space" in rsp.ErrorComment  # the spool write itself hit ENOSPC
                assert assoc.is_established, "a full disk must not drop the association"
                filler.unlink()  # space returns: the same association stores again
                assert send_file(assoc, files[3]).Status == statuses.SUCCESS
            assert count_rows(sessions, Instance) == 4
            for path, data in stored.items():
                assert path.read_bytes() == data, f"{path.name} changed while the disk was full"
                assert dataset_sha256(path)
            assert not list((vol / "storage" / ".incoming").iterdir())
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()


def test_watermark_refuses_storage_associations_but_answers_echo(tmp_path: Path) -> None:
    files = [write_mg(tmp_path / f"{i}.dcm", MGSpec(seed=i, **IMAGE)) for i in range(2)]
    with small_volume(tmp_path / "vol", VOLUME_MB) as vol:
        node = NodeProcesses.create(
            tmp_path / "node", port=free_port(), storage_dir=vol / "storage", min_free_mb=8
        )
        try:
            node.start_scp()
            sessions = node.sessions()
            first = storescu(node.port, files[:1])
            assert first.returncode == 0 and first.succeeded, first.output
            filler = fill(vol, leave_mb=4)  # below the 8 MiB watermark
            refused = storescu(node.port, files[1:])
            assert refused.returncode != 0
            assert "Association Rejected" in refused.output, refused.output
            assert "Transient" in refused.output and not refused.responses
            echo = subprocess.run(
                [require_binary("echoscu"), "-aec", "SGC_NODE", "127.0.0.1", str(node.port)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert echo.returncode == 0, "C-ECHO must still answer below the watermark"
            assert count_rows(sessions, Instance) == 1
            assert not list((vol / "storage" / ".spool").iterdir()), "a refused sender spooled"
            filler.unlink()  # space returns: accepted again, no restart
            again = storescu(node.port, files[1:])
            assert again.returncode == 0 and again.succeeded, again.output
            assert count_rows(sessions, Instance) == 2
            assert "rejecting association" in node.all_logs()
        except BaseException:
            print(node.logs())
            raise
        finally:
            node.stop_all()
