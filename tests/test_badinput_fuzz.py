"""The SCP fuzzer: hypothesis mutates valid mammograms and sends them through the real SCP.

Every mutated dataset goes over loopback to an in-process node (the same SCPServer `sgc scp`
runs) in one long association. Invariants, whatever the bytes:
  - the node answers a C-STORE status from the expected set; 0x0110 (an unexpected exception
    in the handler) or a lost association counts as a crash;
  - an acknowledged dataset is stored under the storage root with exactly the sent bytes and
    has its row; nothing is ever written outside the storage root;
  - the worker's image preparation of a stored dataset returns an image or a reason, never
    raises.
A failing input is written to tests/fuzz/cases/ before the test fails; every file there is
replayed by ``test_fuzz_regression_cases`` on every run.

Default run: ``FUZZ_SECONDS`` (60 s) as the slow marker's bound; ``-m long``: 10 minutes.
Figures (cases tried, statuses, crashes) are printed and recorded in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, association
from sqlalchemy import select

from db.models import Instance
from db.session import upgrade
from scp import statuses
from scp.digest import bytes_digest
from scp.server import SCPServer
from scp.storage import dataset_digest, file_meta
from tests.fuzz.mutate import mutated
from tests.helpers.mg import MG_FOR_PRESENTATION, MGSpec, mg_dataset
from tests.helpers.scpnode import node_settings

CASES = Path(__file__).parent / "fuzz" / "cases"
FUZZ_SECONDS = float(os.environ.get("SGC_FUZZ_SECONDS", "60"))
LONG_FUZZ_SECONDS = float(os.environ.get("SGC_FUZZ_LONG_SECONDS", "600"))
ALLOWED = {
    statuses.SUCCESS,
    statuses.DATASET_DOES_NOT_MATCH_SOP_CLASS,
    statuses.CANNOT_UNDERSTAND_UNDECODABLE,
    statuses.CANNOT_UNDERSTAND_MISSING_UID,
    statuses.CANNOT_UNDERSTAND_INVALID_UID,
    statuses.CANNOT_UNDERSTAND_INSTANCE_MISMATCH,
}
SOP_INSTANCE = "1.2.826.0.1.3680043.8.498.1"  # the command's Affected SOP Instance UID


def seed_dataset(implicit: bool = False) -> bytes:
    """A small valid MG image, encoded; every UID is fixed, so mutations keep them addressable
    and the same seeded replay gives the same cases in every process."""
    ds = mg_dataset(
        MGSpec(
            rows=64,
            cols=48,
            sop_instance_uid=SOP_INSTANCE,
            study_uid="1.2.3.4",
            series_uid="1.2.3.4.1",
            seed=1,
        )
    )
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return buf.getvalue()


SEED = seed_dataset()


class FuzzTarget:
    """A node, one association to it and the bookkeeping of what it answered."""

    def __init__(self, tmp: Path, tiny_model: Path | None) -> None:
        url = f"sqlite:///{tmp / 'sgc.db'}"
        upgrade(url)
        self.tmp = tmp
        self.settings = node_settings(tmp, url, model=tiny_model, device="cpu")
        self.node = SCPServer(self.settings, sweeper=False).start()
        self.root = self.node.storage.root
        self.assoc = None
        self.statuses: Counter[str] = Counter()
        self.tried = 0
        self.crashes: list[str] = []
        self._model = None
        if tiny_model is not None:
            from worker.runtime import classifier_for

            self._model = classifier_for(self.settings)

    def associate(self):
        if self.assoc is None or not self.assoc.is_established:
            ae = AE(ae_title="FUZZSCU")
            ae.add_requested_context(MG_FOR_PRESENTATION, [ExplicitVRLittleEndian])
            ae.add_requested_context(MG_FOR_PRESENTATION, [ImplicitVRLittleEndian])
            self.assoc = ae.associate("127.0.0.1", self.node.address[1], ae_title="SGC_NODE")
            assert self.assoc.is_established, "the node no longer accepts associations"
        return self.assoc

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self.node.stop()

    def check(self, body: bytes, ts: str) -> str | None:
        """Send one dataset; return None if every invariant held, else what broke."""
        self.tried += 1
        path = self.tmp / "case.dcm"
        meta = file_meta(MG_FOR_PRESENTATION, SOP_INSTANCE, ts)
        head = io.BytesIO()
        head.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(head, meta)
        path.write_bytes(head.getvalue() + body)
        assoc = self.associate()
        # pynetdicom's SCU finds the dataset by reading elements until one is not group 0002;
        # a mutated first tag would move that boundary, so tell it where the meta ends.
        split = association.split_dataset
        association.split_dataset = lambda _path: (meta, len(head.getvalue()))
        previous, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
        try:
            rsp = assoc.send_c_store(path)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = previous
            association.split_dataset = split
        if rsp is None or "Status" not in rsp:
            self.assoc = None
            return "no C-STORE response: the association was lost"
        status = int(rsp.Status)
        self.statuses[f"0x{status:04X}"] += 1
        if status not in ALLOWED:
            return f"status 0x{status:04X} ({rsp.get('ErrorComment', '')})"
        if not assoc.is_established:
            return "association lost after the response"
        if status == statuses.SUCCESS:
            problem = self._check_stored(body)
            if problem:
                return problem
        return self._check_outside()

    def _check_stored(self, body: bytes) -> str | None:
        digest = bytes_digest(body)
        with self.node.session_factory() as s:
            row = s.scalars(select(Instance).where(Instance.sha256 == digest)).first()
        if row is None:
            return "acknowledged but no row with the sent bytes"
        stored = (self.root / row.path).resolve()
        if self.root not in stored.parents:
            return f"stored outside the storage root: {stored}"
        if dataset_digest(stored) != digest:
            return "stored bytes differ from the sent bytes"
        if self._model is not None:
            from worker.pipeline import classify_paths

            try:
                classify_paths(self._model, [stored])
            except Exception as exc:  # the worker must answer with a reason, not raise
                return f"worker pipeline raised {type(exc).__name__}: {exc}"
        return None

    def _check_outside(self) -> str | None:
        for p in (Path("/tmp/sgc-fuzz"), self.tmp.parent / "sgc-fuzz"):
            if p.exists():
                return f"a file appeared outside the storage root: {p}"
        return None


def keep_case(body: bytes, ts: str, why: str) -> Path:
    """Write a failing input as a regression case (dataset bytes + what the meta said)."""
    CASES.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(body).hexdigest()[:16]
    path = CASES / f"{name}.bin"
    path.write_bytes(body)
    (CASES / f"{name}.json").write_text(json.dumps({"transfer_syntax": ts, "failure": why}))
    return path


@contextlib.contextmanager
def fuzz_target(tmp: Path, tiny_model: Path | None) -> Iterator[FuzzTarget]:
    target = FuzzTarget(tmp, tiny_model)
    try:
        yield target
    finally:
        target.close()


class TimeUp(Exception):
    """Raised inside the property once the time budget is spent: hypothesis has no clock."""


def run_fuzzer(
    tmp: Path, tiny_model: Path, seconds: float, derandomize: bool = False
) -> FuzzTarget:
    """Run hypothesis against the node for about ``seconds``; fail on the first crash.

    ``derandomize`` replays the same case sequence every run: the default suite (and CI)
    re-checks cases known to pass, so a red CI means a regression, while the long run
    explores new random cases and keeps what it finds in tests/fuzz/cases/.
    """
    deadline = time.monotonic() + seconds
    with fuzz_target(tmp, tiny_model) as target:

        @settings(
            max_examples=900 if derandomize else 1_000_000,  # the replayed prefix, checked
            derandomize=derandomize,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],  # no shrinking: the bound is time; cases are kept raw
        )
        @given(case=mutated(SEED), implicit_context=st.booleans())
        def fuzz(case: tuple[bytes, str], implicit_context: bool) -> None:
            if time.monotonic() > deadline:
                raise TimeUp
            body, note = case
            ts = ImplicitVRLittleEndian if implicit_context else ExplicitVRLittleEndian
            problem = target.check(body, ts)
            if problem:
                kept = keep_case(body, ts, f"{problem} [{note}]")
                target.crashes.append(f"{kept.name}: {problem} [{note}]")
                raise AssertionError(f"fuzz case kept as {kept}: {problem} [{note}]")

        with contextlib.suppress(TimeUp, AssertionError):  # a crash is in target.crashes
            fuzz()
        print(
            f"\nfuzz: {target.tried} cases in {seconds:.0f} s, statuses {dict(target.statuses)}, "
            f"crashes {len(target.crashes)}"
        )
        return target


def test_fuzz_regression_cases(tmp_path: Path, tiny_model: Path) -> None:
    """Every kept case (and the unmutated seed in both encodings) passes the invariants."""
    with fuzz_target(tmp_path, tiny_model) as target:
        assert target.check(SEED, ExplicitVRLittleEndian) is None
        assert target.statuses["0x0000"] == 1
        assert target.check(seed_dataset(implicit=True), ImplicitVRLittleEndian) is None
        for case in sorted(CASES.glob("*.bin")):
            ts = json.loads(case.with_suffix(".json").read_text())["transfer_syntax"]
            assert target.check(case.read_bytes(), ts) is None, case.name


@pytest.mark.slow
def test_fuzz_scp(tmp_path: Path, tiny_model: Path) -> None:
    target = run_fuzzer(tmp_path, tiny_model, FUZZ_SECONDS, derandomize=True)
    assert target.crashes == []
    assert target.tried > 50  # the bound is time, but a run that tried nothing proves nothing


@pytest.mark.long
def test_fuzz_scp_long(tmp_path: Path, tiny_model: Path) -> None:
    target = run_fuzzer(tmp_path, tiny_model, LONG_FUZZ_SECONDS)
    assert target.crashes == []
