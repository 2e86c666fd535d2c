"""Running the STOW-RS door: settings in, a uvicorn server out (`sgc web`, `sgc serve`).

Why uvicorn: a well-kept ASGI server that streams request bodies, speaks TLS with client
certificates (SGC_WEB_TLS_*), and stops cleanly on SIGTERM, which is how `sgc serve`'s
supervisor stops its children.
"""

from __future__ import annotations

import logging
import ssl
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
    uvicorn.Server(config).run()
