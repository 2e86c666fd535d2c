"""The SCP process: the AE's server threads plus the sweeper, started and stopped together.

Why one object: tests start a complete node in-process on a free port, and ``sgc scp`` runs
the same object until SIGINT/SIGTERM, so what is tested is what runs.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import tempfile
import threading
from pathlib import Path

from pynetdicom import _config
from pynetdicom.transport import ThreadedAssociationServer

from db.session import make_engine, make_session_factory
from scp.ae import MAMMOGRAPHY_SOP_CLASSES, build_ae, handlers, server_ssl_context
from scp.dispatch import Dispatcher, make_producer
from scp.handlers import StoreHandler
from scp.spool import install as install_spool
from scp.storage import Storage
from scp.sweeper import Sweeper
from scp.transport import NodeRequestHandler, reuse_port_server
from scp.uids import memoize_library_uid_checks
from sgc_config.settings import Settings

log = logging.getLogger(__name__)

# The most SCP processes chosen from the core count when SGC_SCP_PROCESSES is 0 (auto).
AUTO_PROCESSES_MAX = 8


def pynetdicom_event_logging() -> str:
    """``"standard"`` only when pynetdicom's event log lines would be emitted.

    Why: pynetdicom's default handlers build a log line for every PDU and DIMSE message,
    naming each of the ~120 presentation contexts a ``storescu`` proposes, whether or not
    the logger keeps it. With the node's logging they are dropped (pynetdicom stays at
    WARNING), and building them was ~10 % of the SCP's Python time at 8 associations.
    """
    enabled = logging.getLogger("pynetdicom._handlers").isEnabledFor(logging.INFO)
    return "standard" if enabled else "none"


class SCPServer:
    """A running node front end: C-STORE/C-ECHO SCP + settle/outbox sweeper."""

    def __init__(
        self,
        settings: Settings,
        sweeper: bool = True,
        reuse_port: bool = False,
        clean_start: bool = True,
    ) -> None:
        self.settings = settings
        # Other processes serve the same port (see serve()); each takes a share of the limit.
        self.reuse_port = reuse_port
        # Remove temporaries left by a crash: only the first process, before the others run.
        self.clean_start = clean_start
        self.storage = Storage(
            settings.resolved_storage_dir, fsync=settings.fsync, min_free_mb=settings.min_free_mb
        )
        self.engine = make_engine(settings.resolved_database_url)
        self.session_factory = make_session_factory(self.engine)
        self.dispatcher = Dispatcher(make_producer(settings))
        self.sweeper: Sweeper | None = (
            Sweeper(
                self.session_factory,
                self.dispatcher,
                stable_age=settings.stable_age,
                interval=settings.sweep_interval,
                resend_after=settings.resend_after,
                max_attempts=settings.max_attempts,
            )
            if sweeper
            else None
        )
        self.server: ThreadedAssociationServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None, "server not started"
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> SCPServer:
        # Receive C-STORE datasets into a spool file, not into memory (20-60 MB each).
        _config.STORE_RECV_CHUNKED_DATASET = True
        _config.LOG_HANDLER_LEVEL = pynetdicom_event_logging()
        # A full disk while spooling answers 0xA700, never kills the link.
        install_spool(early_writeback=self.settings.fsync)
        memoize_library_uid_checks()
        if self.clean_start:
            self.storage.prepare()
        else:
            self.storage.incoming.mkdir(parents=True, exist_ok=True)
        store = StoreHandler(self.storage, self.session_factory, MAMMOGRAPHY_SOP_CLASSES)
        # Each process takes the full max_associations even when processes share the port:
        # the kernel hands connections to SO_REUSEPORT sockets by a hash of the addresses,
        # not by load, so a per-process share refused senders while the node had room.
        ae = build_ae(self.settings)
        self.server = ae.make_server(
            (self.settings.host, self.settings.port),
            evt_handlers=handlers(store),
            ssl_context=server_ssl_context(self.settings),
            server_class=reuse_port_server(self.reuse_port),
            request_handler=NodeRequestHandler,
        )
        ae._servers.append(self.server)  # as start_server does: shutdown() removes it
        threading.Thread(
            target=self.server.serve_forever, name="AcceptorServer", daemon=True
        ).start()
        if self.sweeper is not None:
            self.sweeper.start()
        log.info(
            "SCP %s listening on %s:%d (storage %s, TLS %s)",
            self.settings.ae_title,
            *self.address,
            self.storage.root,
            "on" if self.settings.tls_cert else "off",
        )
        return self

    def stop(self) -> None:
        """Stop accepting, let running associations end, stop the sweeper, close pools."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        if self.sweeper is not None:
            self.sweeper.stop()
        self.dispatcher.close()
        self.engine.dispose()
        log.info("SCP %s stopped", self.settings.ae_title)

    def __enter__(self) -> SCPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def use_spool_dir(storage_root: Path) -> Path:
    """Spool incoming datasets on the storage volume instead of the system temp dir.

    pynetdicom writes each received dataset to a NamedTemporaryFile in the process's temp
    directory; on containers that is often a small tmpfs in RAM, and a spool file on the
    storage volume can be renamed into place instead of copied. The SCP process (and only
    it: this sets the process-wide default) points it at ``<storage>/.spool``, emptied on
    start because files left there belong to associations that died with the last process.
    """
    spool = storage_root / ".spool"
    spool.mkdir(parents=True, exist_ok=True)
    for stale in spool.iterdir():
        if stale.is_file():
            stale.unlink(missing_ok=True)
    tempfile.tempdir = str(spool)
    return spool


def scp_processes(settings: Settings) -> int:
    """How many SCP processes share the port: the setting, or for 0 (the default) one per
    core this process may run on, at most :data:`AUTO_PROCESSES_MAX`.

    Why one per core: pynetdicom decodes PDUs in Python, so in one process concurrent
    associations share one GIL; ``storescp --fork`` gets every core with one process per
    association. Past a few processes the kernel's SO_REUSEPORT hash (not load-aware) and
    each process's idle threads cost more than they give.
    """
    if settings.scp_processes:
        return settings.scp_processes
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: SO_REUSEPORT spreading is Linux's anyway
        return 1
    return max(1, min(cores, AUTO_PROCESSES_MAX))


def serve(settings: Settings) -> None:
    """Run the SCP until SIGINT or SIGTERM, then shut down cleanly.

    With :func:`scp_processes` > 1 this process also starts that many minus one receive-only
    SCP processes on the same port (SO_REUSEPORT: the kernel hands each new connection to
    one of them), because pynetdicom decodes PDUs in Python: in one process concurrent
    associations contend for one GIL and cost more CPU each (docs/benchmarks.md, Ingest:
    36 ms of CPU per 17 MB image on one association, 53-60 ms at 4-8). They share the
    database and the storage; this
    process alone cleans up after a crash (first) and runs the sweeper, so settled studies
    are dispatched once. A receive process that dies is started again.
    """
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    use_spool_dir(settings.resolved_storage_dir)
    processes = scp_processes(settings)
    extra = processes - 1
    if extra and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning(
            "%d SCP processes without PROMETHEUS_MULTIPROC_DIR: /metrics counts only "
            "this process's C-STOREs (`sgc serve` sets it and sums all processes)",
            processes,
        )
    with SCPServer(settings, reuse_port=extra > 0):
        receivers = [_start_receiver(settings) for _ in range(extra)]
        try:
            while not stop.wait(1.0):
                for i, proc in enumerate(receivers):
                    if not proc.is_alive():
                        log.error(
                            "SCP receive process %d exited (%s); starting another",
                            proc.pid,
                            proc.exitcode,
                        )
                        receivers[i] = _start_receiver(settings)
        finally:
            for proc in receivers:
                proc.terminate()  # SIGTERM: it stops accepting and finishes its associations
            for proc in receivers:
                proc.join(60)
                if proc.is_alive():
                    proc.kill()


def _start_receiver(settings: Settings) -> multiprocessing.process.BaseProcess:
    # spawn, not fork: this process already runs threads (server, sweeper, metrics).
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve_receiver, args=(settings, os.getpid()), name="sgc-scp-receiver", daemon=False
    )
    proc.start()
    return proc


def _serve_receiver(settings: Settings, parent: int) -> None:
    """A receive-only SCP process (see :func:`serve`): no cleanup, no sweeper.

    It stops with its parent, even one killed with SIGKILL: an orphan would keep taking
    connections on the port beside the node that replaces it.
    """
    from sgc_config.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tempfile.tempdir = str(settings.resolved_storage_dir / ".spool")
    with SCPServer(settings, sweeper=False, reuse_port=True, clean_start=False):
        while not stop.wait(1.0) and os.getppid() == parent:
            pass
