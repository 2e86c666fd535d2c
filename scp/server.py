"""The SCP process: the AE's server threads plus the sweeper, started and stopped together.

Why one object: tests start a complete node in-process on a free port, and ``sgc scp`` runs
the same object until SIGINT/SIGTERM, so what is tested is what runs.
"""

from __future__ import annotations

import logging
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
from sgc_node.settings import Settings

log = logging.getLogger(__name__)


class SCPServer:
    """A running node front end: C-STORE/C-ECHO SCP + settle/outbox sweeper."""

    def __init__(self, settings: Settings, sweeper: bool = True) -> None:
        self.settings = settings
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
        install_spool()  # a full disk while spooling answers 0xA700, never kills the link
        self.storage.prepare()
        store = StoreHandler(self.storage, self.session_factory, MAMMOGRAPHY_SOP_CLASSES)
        ae = build_ae(self.settings)
        self.server = ae.start_server(
            (self.settings.host, self.settings.port),
            block=False,
            evt_handlers=handlers(store),
            ssl_context=server_ssl_context(self.settings),
        )
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
    directory; on containers that is often a small tmpfs in RAM. The SCP process (and only
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


def serve(settings: Settings) -> None:
    """Run the SCP until SIGINT or SIGTERM, then shut down cleanly."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    use_spool_dir(settings.resolved_storage_dir)
    with SCPServer(settings):
        stop.wait()
