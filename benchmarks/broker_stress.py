"""Stress the embedded broker: several producer and consumer processes, thousands of messages.

What it reports, for each transport in the same run (the project's ``sgcfs://`` from
``sgc_config/fs_transport.py`` and kombu 5.7's stock ``filesystem://``), on the same folder
layout, producers, consumers and message count:
  - messages sent, received (unique), lost (sent, never received), duplicated (received more
    than once), and messages quarantined as unreadable (sgcfs only),
  - consumer errors by exception type (e.g. ``JSONDecodeError``: a message file read while it
    was being written); a consumer that raises records the error and goes on, as a restarted
    worker would, so one run counts every failure instead of stopping at the first,
  - with ``--kill-every S``: consumers SIGKILLed (one every S seconds, each replaced by a new
    process); a message a killed consumer had handled but not acked is delivered again (a
    duplicate, at most one per kill), one it had claimed but not handled is delivered again
    (sgcfs) or lost (stock: a fetched message is deleted),
  - wall time and messages/s.

Each producer and consumer is its own process (kombu ``Connection``; consumers ack each
message, prefetch 1, as the node's Celery worker does). A run ends when every message was
received, or when the producers are done and nothing new arrived for ``--idle`` seconds.

    .venv/bin/python -m benchmarks.broker_stress                       # 4 x 4, 10000 messages
    .venv/bin/python -m benchmarks.broker_stress --messages 2000 --only sgcfs
    .venv/bin/python -m benchmarks.broker_stress --kill-every 2     # SIGKILL consumers as well
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing as mp
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kombu import Connection, Consumer, Exchange, Queue

from sgc_config import fs_transport
from sgc_config.broker import filesystem_options

ROOT = Path(__file__).resolve().parents[1]

QUEUE = "stress"
TRANSPORTS = {"sgcfs": f"{fs_transport.SCHEME}://", "stock": "filesystem://"}


@dataclass
class StressResult:
    transport: str
    sent: int
    received: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    quarantined: int = 0
    kills: int = 0
    seconds: float = 0.0
    consumer_exits: list = field(default_factory=list)

    @property
    def unique(self) -> int:
        return len(self.received)

    @property
    def lost(self) -> int:
        return self.sent - self.unique

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.received.values() if n > 1)

    def line(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        rate = self.unique / self.seconds if self.seconds else 0.0
        return (
            f"{self.transport:6s} sent {self.sent:6d}  received {self.unique:6d}  "
            f"lost {self.lost:5d}  duplicated {self.duplicated:4d}  "
            f"quarantined {self.quarantined:4d}  consumers killed {self.kills:3d}  "
            f"consumer errors: {errors}  "
            f"{self.seconds:6.1f} s  {rate:7.0f} msg/s"
        )


def transport_options(folder: Path) -> dict:
    """The node's layout (``sgc_config.broker.filesystem_options``) under ``folder``, polling
    every 0.05 s, as this benchmark always has (the node polls every 0.1 s)."""
    return filesystem_options(folder, polling_interval=0.05)


def _queue() -> Queue:
    return Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)


def _connect(transport: str, folder: Path) -> Connection:
    fs_transport.register()
    return Connection(TRANSPORTS[transport], transport_options=transport_options(folder))


def produce(transport: str, folder: Path, first: int, count: int) -> None:
    """Publish messages ``first .. first+count-1`` (body: their number)."""
    with _connect(transport, folder) as conn:
        queue = _queue()
        queue(conn.default_channel).declare()
        producer = conn.Producer(serializer="json")
        for n in range(first, first + count):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=QUEUE)


def consume(transport: str, folder: Path, out: Path) -> None:
    """Ack every message and append its number to ``out``; record errors as ``!Type`` lines."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def on_message(body, message) -> None:
        os.write(fd, f"{body['n']}\n".encode())
        message.ack()

    with _connect(transport, folder) as conn:
        while not stop:
            try:
                with Consumer(conn, [_queue()], callbacks=[on_message], prefetch_count=1):
                    while not stop:
                        with contextlib.suppress(TimeoutError):
                            conn.drain_events(timeout=0.5)
            except Exception as exc:  # the point of the run: count what kills a worker
                os.write(fd, f"!{type(exc).__name__}\n".encode())


def _read_outputs(outs: list[Path], result: StressResult) -> None:
    result.received.clear()
    result.errors.clear()
    for path in outs:
        if not path.exists():
            continue
        for line in path.read_text().split("\n"):
            if line.startswith("!"):
                result.errors[line[1:]] += 1
            elif line:
                result.received[int(line)] += 1


def run_stress(
    transport: str,
    folder: Path,
    messages: int = 2000,
    producers: int = 3,
    consumers: int = 3,
    idle: float = 5.0,
    timeout: float = 300.0,
    kill_every: float | None = None,
) -> StressResult:
    """One run of ``producers`` x ``consumers`` processes over ``messages`` messages.

    ``kill_every``: SIGKILL one consumer (in turn) every so many seconds while messages are
    outstanding and start a replacement, as `sgc serve` restarts a killed worker.
    """
    folder.mkdir(parents=True, exist_ok=True)
    run = _Run(transport, folder, StressResult(transport, messages))
    share = [messages // producers + (i < messages % producers) for i in range(producers)]
    firsts = [sum(share[:i]) for i in range(producers)]
    prods = [
        run.ctx.Process(target=produce, args=(transport, folder, first, n))
        for first, n in zip(firsts, share, strict=True)
    ]
    start = time.monotonic()
    for _ in range(consumers):
        run.spawn_consumer()
    for p in prods:
        p.start()
    try:
        run.wait(prods, idle, start + timeout, kill_every)
    finally:
        run.stop(prods)
    result = run.result
    result.seconds = time.monotonic() - start
    result.consumer_exits = [p.exitcode for p in run.consumers]
    _read_outputs(run.outs, result)
    result.quarantined = len(os.listdir(folder / "quarantine"))
    return result


class _Run:
    """The consumer processes of one run, their output files, and the kills."""

    def __init__(self, transport: str, folder: Path, result: StressResult) -> None:
        self.transport, self.folder, self.result = transport, folder, result
        self.ctx = mp.get_context("spawn")
        self.consumers: list = []
        self.outs: list[Path] = []

    def spawn_consumer(self, slot: int | None = None) -> None:
        out = self.folder / f"consumer-{len(self.outs)}.out"
        proc = self.ctx.Process(target=consume, args=(self.transport, self.folder, out))
        proc.start()
        self.outs.append(out)
        if slot is None:
            self.consumers.append(proc)
        else:
            self.consumers[slot] = proc

    def kill_one(self) -> None:
        slot = self.result.kills % len(self.consumers)
        victim = self.consumers[slot]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        self.result.kills += 1
        self.spawn_consumer(slot)

    def wait(self, prods, idle: float, deadline: float, kill_every: float | None) -> None:
        last, last_change = -1, time.monotonic()
        next_kill = time.monotonic() + kill_every if kill_every else None
        while time.monotonic() < deadline:
            _read_outputs(self.outs, self.result)
            if self.result.unique >= self.result.sent:
                return
            if next_kill is not None and time.monotonic() >= next_kill:
                self.kill_one()
                next_kill = time.monotonic() + kill_every
            seen = sum(self.result.received.values()) + sum(self.result.errors.values())
            if seen != last:
                last, last_change = seen, time.monotonic()
            elif not any(p.is_alive() for p in prods) and time.monotonic() - last_change > idle:
                return
            time.sleep(0.2)

    def stop(self, prods) -> None:
        for p in self.consumers:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in self.consumers + prods:
            p.join(20)
            if p.is_alive():
                p.kill()
                p.join()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=10000)
    p.add_argument("--producers", type=int, default=4)
    p.add_argument("--consumers", type=int, default=4)
    p.add_argument("--idle", type=float, default=10.0, help="end after this long without news")
    p.add_argument(
        "--kill-every", type=float, help="SIGKILL a consumer every S seconds (and start another)"
    )
    p.add_argument("--only", choices=sorted(TRANSPORTS), help="run one transport only")
    p.add_argument("--folder", type=Path, help="where the queues live (default: a temp dir)")
    args = p.parse_args(argv)
    if min(args.messages, args.producers, args.consumers) < 1:
        p.error("--messages, --producers and --consumers must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import kombu

    print(
        f"broker stress: {args.messages} messages, {args.producers} producers, "
        f"{args.consumers} consumers; kombu {kombu.__version__}, Python "
        f"{platform.python_version()}, {platform.platform()}, {os.cpu_count()} CPUs"
    )
    base = args.folder or Path(tempfile.mkdtemp(prefix="broker-stress-"))
    results = []
    for name in [args.only] if args.only else ["sgcfs", "stock"]:
        result = run_stress(
            name,
            base / name,
            args.messages,
            args.producers,
            args.consumers,
            args.idle,
            kill_every=args.kill_every,
        )
        results.append(result)
        print(result.line(), flush=True)
    ours = next((r for r in results if r.transport == "sgcfs"), None)
    # A consumer killed after it handled a message but before its ack gets that message again
    # (the node's job fence absorbs such a duplicate): at most one per kill.
    ok = ours is None or (ours.lost == 0 and ours.duplicated <= ours.kills and not ours.errors)
    verdict = "no loss, no consumer error, duplicates <= kills" if ok else "FAILED"
    print(f"sgcfs: {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
