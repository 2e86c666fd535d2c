"""One success set for both C-STORE users: `sgc send` and SR delivery count the same
statuses as stored, against a real pynetdicom SCP that answers each status in turn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from sgc_config.settings import RemoteNode, Settings
from sgc_node.send import send_files
from tests.conftest import free_port
from tests.helpers.mg import MGSpec, write_mg
from worker.deliver import send_report
from worker.dimse import STORED_STATUSES

STATUSES = [0x0000, 0x0001, 0xB000, 0xB006, 0xB007, 0xA700, 0xC000, 0x0110]


@pytest.fixture
def answering_scp() -> Iterator[tuple[RemoteNode, list[int]]]:
    """An SCP that answers the statuses of the list it yields, one per C-STORE, in order."""
    answers: list[int] = []
    ae = AE(ae_title="PEER")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, lambda _event: answers.pop(0))],
    )
    try:
        yield RemoteNode(ae_title="PEER", host="127.0.0.1", port=port), answers
    finally:
        server.shutdown()


def test_send_and_delivery_share_one_success_set(answering_scp, tmp_path: Path) -> None:
    node, answers = answering_scp
    assert {0x0000, 0x0001, 0xB000, 0xB006, 0xB007} == STORED_STATUSES
    files = [write_mg(tmp_path / f"{i}.dcm", MGSpec(rows=32, cols=24, seed=i)) for i in range(8)]

    answers.extend(STATUSES)
    result = send_files(files, node)
    stored = {files.index(p) for p in result.sent}
    assert stored == {i for i, s in enumerate(STATUSES) if s in STORED_STATUSES}
    assert [why.split("status ")[1][:6] for _, why in result.failed] == [
        "0xA700",
        "0xC000",
        "0x0110",
    ]

    settings = Settings(data_dir=tmp_path / "data", ae_title="SGC_NODE")
    answers.extend(STATUSES)
    outcomes = [send_report(files[0], str(node), settings) for _ in STATUSES]
    assert [o.stored for o in outcomes] == [s in STORED_STATUSES for s in STATUSES]
    assert [o.status for o in outcomes] == STATUSES
    assert all(str(node) in o.error for o in outcomes if not o.stored)
