"""Running the STOW-RS door: settings in, a uvicorn server out (`sgc web`, `sgc serve`).

Why uvicorn: a well-kept ASGI server that streams request bodies and speaks TLS with client
certificates (SGC_WEB_TLS_*). It shuts down gracefully on SIGINT/SIGTERM, but then raises the
same signal again with the previous handler in place (uvicorn >= 0.29), so the process died
of SIGTERM (status -15 under `sgc serve`) or of KeyboardInterrupt (click's "Aborted!", status
1) after a clean stop. :class:`_DoorServer` keeps the graceful shutdown and drops the re-raise,
so the door exits 0 on either signal like the SCP.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from db.session import make_engine, make_session_factory
from scp.ae import MAMMOGRAPHY_SOP_CLASSES, TRANSFER_SYNTAXES, accepted_sop_classes
from scp.storage import Storage
from scp.web.app import Door, create_app
from scp.web.ingest import Policy
from sgc_config.settings import Settings

log = logging.getLogger(__name__)


def make_door(settings: Settings) -> Door:
    """The door's storage, database and acceptance policy, read from the node's settings."""
    storage = Storage(
        settings.resolved_storage_dir, fsync=settings.fsync, min_free_mb=settings.min_free_mb
    )
    policy = Policy(
        accepted_sop_classes=frozenset(accepted_sop_classes(settings)),
        classifiable_sop_classes=frozenset(MAMMOGRAPHY_SOP_CLASSES),
        transfer_syntaxes=frozenset(TRANSFER_SYNTAXES),
    )
    token = settings.web_token.get_secret_value() if settings.web_token else None
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    return Door(storage, sessions, policy, token, settings.web_max_body_mb << 20)


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS arguments: HTTPS with SGC_WEB_TLS_CERT/KEY, client certs with _CA."""
    if settings.web_tls_cert is None:
        return {}
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.web_tls_cert),
        "ssl_keyfile": str(settings.web_tls_key),
    }
    if settings.web_tls_ca is not None:
        options["ssl_ca_certs"] = str(settings.web_tls_ca)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


def _door_server(config):
    """A uvicorn Server whose stop signals end :meth:`run` normally (see the module's why)."""
    import uvicorn

    class _DoorServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield  # signal handlers can only be set from the main thread
                return
            stops = (signal.SIGINT, signal.SIGTERM)
            # Explicitly, whatever the disposition at start (SIG_IGN in a background job).
            previous = {s: signal.signal(s, self.handle_exit) for s in stops}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    return _DoorServer(config)


def serve_web(settings: Settings) -> None:
    """Serve STOW-RS on SGC_WEB_HOST:SGC_WEB_PORT until SIGINT/SIGTERM."""
    import uvicorn

    door = make_door(settings)
    door.prepare()
    config = uvicorn.Config(
        create_app(door),
        host=settings.web_host,
        port=settings.web_port,
        log_config=None,  # the node's logging setup (sgc_config.logs) applies
        access_log=False,
        server_header=False,
        **tls_options(settings),
    )
    log.info(
        "STOW-RS on %s://%s:%d/studies (token %s, client certificates %s)",
        "https" if settings.web_tls_cert else "http",
        settings.web_host,
        settings.web_port,
        "required" if door.token else "off",
        "required" if settings.web_tls_ca else "off",
    )
    _door_server(config).run()
    log.info("STOW-RS door stopped")
