"""The embedded broker: kombu's filesystem transport, made safe for several processes at once.

Why not kombu's own (5.7): its ``_put`` creates the message file under its final name and then
writes it, while ``_get`` moves and reads whatever file it finds, without the writer's lock. A
consumer can read an empty or half-written file; the ``JSONDecodeError`` kills the worker and
the message is gone. A fetched message is deleted at once, so a consumer killed before it
finished loses the message too. The exchange tables are rewritten in place the same way.

What this transport (URL scheme :data:`SCHEME`, registered with kombu by :func:`register`)
does instead, on one host:

- **put**: the message is written under a hidden temporary name in the queue folder, fsynced
  and renamed to its final name (then the folder is fsynced). ``rename`` is atomic: a reader
  sees the whole message or nothing.
- **claim**: a consumer takes a message by renaming it into ``claimed/<owner>/`` (owner = pid
  and process start time). Of several consumers racing for one file exactly one rename
  succeeds; the others get ``FileNotFoundError`` and try the next file.
- **tolerant read**: a claimed file that cannot be parsed (only a damaged disk or a foreign
  file can cause it now) is moved to ``quarantine/`` and logged; the consumer goes on.
- **ack** deletes the claimed file; a reject with requeue and a clean shutdown put the message
  back in the queue. A consumer killed in between leaves its claimed files behind; any channel
  of this host that finds their owner dead (at start and every :data:`RECOVER_INTERVAL`
  seconds) renames them back into the queue, so they are delivered again, much as Redis's
  visibility timeout does. The duplicate this can make (a worker killed after it finished a
  task but before the ack) is absorbed by the jobs' database claims (the job fence): a
  delivered job or report is never done twice.
- **exchange tables** are changed under a lock file and replaced whole by rename, so a reader
  never sees a truncated table.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections import deque
from pathlib import Path
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from sgc_config.atomic import TMP_SUFFIX, write_atomic

log = logging.getLogger(__name__)

#: The URL scheme of this transport (``sgcfs://``); :func:`register` makes kombu know it.
SCHEME = "sgcfs"

#: Seconds between two looks for messages claimed by consumers that died. A restarted worker
#: also looks at once, so this only bounds the delay when another worker is already running.
RECOVER_INTERVAL = 10.0

#: A temporary message file older than this (seconds) belongs to a writer that died mid-write
#: (a write takes milliseconds); it is removed when abandoned claims are recovered.
STALE_TMP_AGE = 600.0


def register() -> None:
    """Make ``sgcfs://`` resolve to :class:`Transport` in kombu (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), or None if it is gone or a zombie.

    Why the start time and not the pid alone: pids are reused, and a new process with an old
    consumer's pid must not keep that consumer's claims from being recovered.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc here: fall back to "the pid exists"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _owner_name(pid: int) -> str:
    return f"{pid}-{_start_time(pid)}"


def _owner_alive(name: str) -> bool:
    pid, _, start = name.partition("-")
    if not pid.isdigit():
        return True  # not ours: leave it alone
    now = _start_time(int(pid))
    return now is not None and (now == start or "?" in (now, start))


class Channel(filesystem.Channel):
    """A filesystem channel with atomic writes, claim-by-rename and redelivery (see module)."""

    def __init__(self, *args, **kwargs) -> None:
        self._claimed: dict[str, Path] = {}  # delivery tag -> claimed file, until ack
        self._noack_queues: set[str] = set()
        self._backlog: dict[str, deque[str]] = {}
        self._owner: tuple[int, str] | None = None
        super().__init__(*args, **kwargs)
        for folder in (self.claimed_folder, self.quarantine_folder):
            folder.mkdir(parents=True, exist_ok=True)
        self._next_recovery = 0.0
        self._maybe_recover()

    # --- folders -----------------------------------------------------------------------------

    @cached_property
    def claimed_folder(self) -> Path:
        default = Path(self.data_folder_in).parent / "claimed"
        return Path(self.transport_options.get("claimed_folder", default))

    @cached_property
    def quarantine_folder(self) -> Path:
        default = Path(self.data_folder_in).parent / "quarantine"
        return Path(self.transport_options.get("quarantine_folder", default))

    def _my_claims(self) -> Path:
        """``claimed/<pid>-<start>`` of the current process (recomputed after a fork)."""
        pid = os.getpid()
        if self._owner is None or self._owner[0] != pid:
            self._owner = (pid, _owner_name(pid))
            (self.claimed_folder / self._owner[1]).mkdir(parents=True, exist_ok=True)
        return self.claimed_folder / self._owner[1]

    # --- messages ----------------------------------------------------------------------------

    def _put(self, queue, payload, **kwargs) -> None:
        """Write ``payload`` as one whole file (temporary name, fsync, rename)."""
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        path = Path(self.data_folder_out) / name
        try:
            write_atomic(path, str_to_bytes(dumps(payload)), mode=0o600)
        except OSError as exc:
            raise ChannelError(f"cannot add message {name!r} to {path.parent}: {exc}") from exc

    def _get(self, queue):
        """Claim and read the oldest readable message of ``queue``; raise Empty if none."""
        self._maybe_recover()
        backlog = self._backlog.get(queue)
        if not backlog:
            backlog = self._backlog[queue] = deque(self._list(queue))
        while backlog:
            name = backlog.popleft()
            claimed = self._claim(name)
            if claimed is None:
                continue  # another consumer won this one
            payload = self._read(claimed)
            if payload is None:
                continue  # quarantined
            self._track(queue, payload, claimed)
            return payload
        raise Empty()

    def _list(self, queue) -> list[str]:
        wanted = f"{queue}.msg"
        names = os.listdir(self.data_folder_in)
        return sorted(n for n in names if n.partition(".")[2] == wanted)

    def _claim(self, name: str) -> Path | None:
        target = self._my_claims() / name
        try:
            os.rename(os.path.join(self.data_folder_in, name), target)
        except FileNotFoundError:
            return None
        return target

    def _read(self, path: Path) -> dict | None:
        """The parsed message, or None after moving an unreadable file to quarantine."""
        try:
            payload = loads(bytes_to_str(path.read_bytes()))
            if not isinstance(payload, dict):
                raise ValueError(f"a message is a JSON object, not {type(payload).__name__}")
            return payload
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            self._quarantine(path, exc)
            return None

    def _quarantine(self, path: Path, exc: Exception) -> None:
        target = self.quarantine_folder / path.name
        try:
            os.rename(path, target)
        except OSError as move_exc:
            log.error("unreadable broker message %s (%s); cannot move it: %s", path, exc, move_exc)
            return
        log.error("unreadable broker message moved to %s: %s", target, exc)

    def _track(self, queue, payload: dict, claimed: Path) -> None:
        """Keep the claimed file until ack, unless nobody will ack it (no-ack consumers)."""
        tag = (payload.get("properties") or {}).get("delivery_tag")
        if tag is None or queue in self._noack_queues:
            claimed.unlink(missing_ok=True)
        else:
            self._claimed[tag] = claimed

    def _release(self, tag) -> None:
        path = self._claimed.pop(tag, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        if no_ack:
            self._noack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack, **kwargs)
        if message is not None and no_ack:
            self._release(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag, multiple=False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._release(delivery_tag)

    def basic_reject(self, delivery_tag, requeue=False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)
        self._release(delivery_tag)

    def _restore(self, message) -> None:
        """Requeue (reject or clean shutdown): a fresh copy marked redelivered, then forget."""
        super()._restore(message)
        self._release(message.delivery_tag)

    def _purge(self, queue) -> int:
        self._backlog.pop(queue, None)
        return super()._purge(queue)

    # --- recovery of claims whose consumer died ---------------------------------------------

    def _maybe_recover(self) -> None:
        now = time.monotonic()
        if now >= self._next_recovery:
            self._next_recovery = now + RECOVER_INTERVAL
            self.recover_abandoned()

    def recover_abandoned(self) -> int:
        """Put back in the queue every message claimed by a process that is gone."""
        returned = 0
        for owner in os.listdir(self.claimed_folder):
            folder = self.claimed_folder / owner
            if not folder.is_dir() or _owner_alive(owner):
                continue
            for name in os.listdir(folder):
                with contextlib.suppress(FileNotFoundError):  # another channel was faster
                    os.rename(folder / name, Path(self.data_folder_in) / name)
                    returned += 1
            with contextlib.suppress(OSError):
                folder.rmdir()
        if returned:
            log.warning("returned %d message(s) claimed by dead consumers to the queue", returned)
            self._backlog.clear()
        self._remove_stale_tmp()
        return returned

    def _remove_stale_tmp(self) -> None:
        cutoff = time.time() - STALE_TMP_AGE
        for folder in {self.data_folder_in, self.data_folder_out}:
            for name in os.listdir(folder):
                path = Path(folder) / name
                with contextlib.suppress(OSError):
                    if name.endswith(TMP_SUFFIX) and path.stat().st_mtime < cutoff:
                        path.unlink()

    # --- exchange tables: replaced whole under a lock ----------------------------------------

    def get_table(self, exchange):
        file = self._exchange_file(exchange)
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"cannot read {file}: {exc}") from exc
        return [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(raw))]

    def _queue_bind(self, exchange, routing_key, pattern, queue) -> None:
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda t: t if entry in t else [entry, *t])

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs) -> None:
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda t: [q for q in t if q != entry])

    def _update_table(self, exchange, change) -> None:
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.control_folder / ".lock", "a+b") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                table = self.get_table(exchange)
                changed = change(list(table))
                if changed != table:
                    write_atomic(file, str_to_bytes(dumps(changed)), mode=0o600)
        except OSError as exc:
            raise ChannelError(f"cannot update {file}: {exc}") from exc


class Transport(filesystem.Transport):
    """The kombu transport for ``sgcfs://`` (options as kombu's filesystem transport, plus
    ``claimed_folder`` and ``quarantine_folder``, by default beside the queue folder)."""

    Channel = Channel

    #: Declared exchanges and bindings, one record per control folder. kombu keeps one record
    #: per process for all filesystem connections, so a second folder opened by the same
    #: process would skip writing its bindings (kombu thinks they exist) and lose messages.
    states: dict[str, virtual.BrokerState] = {}

    def __init__(self, client, **kwargs) -> None:
        super().__init__(client, **kwargs)
        folder = (client.transport_options or {}).get("control_folder", "control")
        key = os.path.realpath(folder)
        self.state = self.states.setdefault(key, virtual.BrokerState())
