"""The embedded broker transport (sgc_config/fs_transport.py): no partial read, no loss, no crash.

Real kombu connections on real folders; the stress test runs real producer and consumer
processes (benchmarks/broker_stress.py at a moderate size), the redelivery test a real
consumer process killed with SIGKILL before its ack.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kombu import Connection

from benchmarks.broker_stress import run_stress, transport_options
from sgc_config import fs_transport
from sgc_config.broker import broker_options
from sgc_config.settings import Settings


def _connection(folder: Path) -> Connection:
    fs_transport.register()
    return Connection(f"{fs_transport.SCHEME}://", transport_options=transport_options(folder))


def _put(conn: Connection, body: dict, queue: str = "q") -> None:
    q = conn.SimpleQueue(queue)
    q.put(body)
    q.close()


def test_stress_producers_and_consumers_lose_nothing_and_never_crash(tmp_path: Path) -> None:
    result = run_stress("sgcfs", tmp_path, messages=3000, producers=3, consumers=3, idle=10)
    assert result.errors == {}, result.line()
    assert result.lost == 0 and result.duplicated == 0, result.line()
    assert result.quarantined == 0 and result.consumer_exits == [0, 0, 0], result.line()
    # Nothing left behind: every claimed message was acked and deleted.
    opts = transport_options(tmp_path)
    assert os.listdir(opts["data_folder_in"]) == []
    assert not any(files for _, _, files in os.walk(opts["claimed_folder"]))


def test_stress_with_consumers_sigkilled_loses_nothing(tmp_path: Path) -> None:
    # Sized so that even a quiet machine (~1200 msg/s) sees several kills before the end.
    result = run_stress(
        "sgcfs", tmp_path, messages=3000, producers=2, consumers=3, idle=10, kill_every=0.4
    )
    assert result.kills >= 2, result.line()
    assert result.errors == {} and result.lost == 0, result.line()
    # Only a message a consumer handled and was killed before acking comes twice: one per kill
    # at most, and the node's job fence makes such a repeat a no-op.
    assert result.duplicated <= result.kills, result.line()


def test_a_message_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        _put(conn, {"n": 1})
    queue = Path(transport_options(tmp_path)["data_folder_in"])
    names = os.listdir(queue)
    assert len(names) == 1 and names[0].endswith(".q.msg")  # no temporary file left over
    message = json.loads((queue / names[0]).read_bytes())
    assert message["properties"]["delivery_tag"]


def test_unreadable_message_is_quarantined_and_the_next_one_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    opts = transport_options(tmp_path)
    queue = Path(opts["data_folder_in"])
    (queue / "00000000000000000001_bad.q.msg").write_bytes(b'{"body": "trunc')
    (queue / "00000000000000000002_empty.q.msg").write_bytes(b"")
    with _connection(tmp_path) as conn:
        _put(conn, {"n": 2})
        q = conn.SimpleQueue("q")
        with caplog.at_level(logging.ERROR, logger="sgc_config.fs_transport"):
            message = q.get(timeout=5)
        assert message.payload == {"n": 2}
        message.ack()
        q.close()
    quarantined = sorted(os.listdir(opts["quarantine_folder"]))
    assert quarantined == ["00000000000000000001_bad.q.msg", "00000000000000000002_empty.q.msg"]
    assert caplog.text.count("unreadable broker message moved to") == 2


def test_ack_deletes_and_reject_with_requeue_returns_the_message(tmp_path: Path) -> None:
    opts = transport_options(tmp_path)
    with _connection(tmp_path) as conn:
        _put(conn, {"n": 1})
        q = conn.SimpleQueue("q")
        first = q.get(timeout=5)
        claimed = [f for _, _, files in os.walk(opts["claimed_folder"]) for f in files]
        assert len(claimed) == 1 and os.listdir(opts["data_folder_in"]) == []
        first.requeue()
        again = q.get(timeout=5)
        assert again.payload == {"n": 1}
        again.ack()
        q.close()
    assert os.listdir(opts["data_folder_in"]) == []
    assert not any(files for _, _, files in os.walk(opts["claimed_folder"]))


_CLAIM_AND_DIE = """
import os, signal, sys
from pathlib import Path
from kombu import Connection
sys.path.insert(0, {root!r})
from benchmarks.broker_stress import transport_options
from sgc_config import fs_transport
fs_transport.register()
conn = Connection("sgcfs://", transport_options=transport_options(Path({folder!r})))
message = conn.SimpleQueue("q").get(timeout=5)
print(message.payload["n"], flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no ack, no clean shutdown
"""


def test_message_claimed_by_a_killed_consumer_is_delivered_again(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        _put(conn, {"n": 7})
    root = str(Path(__file__).resolve().parents[1])
    code = textwrap.dedent(_CLAIM_AND_DIE.format(root=root, folder=str(tmp_path)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and proc.stdout.strip() == "7", proc.stderr
    opts = transport_options(tmp_path)
    assert os.listdir(opts["data_folder_in"]) == []  # claimed, not in the queue
    with _connection(tmp_path) as conn:  # a new channel finds the owner dead
        q = conn.SimpleQueue("q")
        message = q.get(timeout=5)
        assert message.payload == {"n": 7}
        message.ack()
        q.close()
    assert not any(files for _, _, files in os.walk(opts["claimed_folder"]))


def test_claims_of_a_live_process_are_left_alone(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        _put(conn, {"n": 3})
        q = conn.SimpleQueue("q")
        held = q.get(timeout=5)  # claimed by this (live) process, not acked
        with _connection(tmp_path) as other:
            assert other.default_channel.recover_abandoned() == 0
            assert other.default_channel._size("q") == 0
        held.ack()
        q.close()


def test_exchange_table_is_shared_and_never_truncated(tmp_path: Path) -> None:
    with _connection(tmp_path) as a, _connection(tmp_path) as b:
        a.default_channel.exchange_declare("ex", "direct")
        a.default_channel.queue_bind("q1", "ex", "k1")
        b.default_channel.queue_bind("q2", "ex", "k2")
        table = a.default_channel.get_table("ex")
    assert sorted(t.queue for t in table) == ["q1", "q2"]
    control = Path(transport_options(tmp_path)["control_folder"])
    assert not [n for n in os.listdir(control) if n.endswith(".tmp")]


def test_node_broker_options_use_this_transport(tmp_path: Path) -> None:
    url, opts = broker_options(Settings(data_dir=tmp_path))
    with Connection(url, transport_options=opts) as conn:
        assert isinstance(conn.transport, fs_transport.Transport)
        _put(conn, {"n": 5}, queue="classify")
        assert conn.default_channel._size("classify") == 1
    assert Path(opts["claimed_folder"]).is_dir() and Path(opts["quarantine_folder"]).is_dir()
