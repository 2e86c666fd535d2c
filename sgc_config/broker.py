"""How every process of the node reaches the Celery broker: one function, shared by SCP and workers.

Why here: the SCP sends tasks by name and the workers consume them; both must agree on the URL
and the transport options, yet ``scp/`` and ``worker/`` may not import each other. The embedded
default (``SGC_BROKER_URL`` unset, or ``filesystem://``) is the project's own filesystem transport
under ``DATA_DIR/broker`` (no server to run; :mod:`sgc_config.fs_transport` says why not kombu's);
production sets ``SGC_BROKER_URL=redis://...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sgc_config import fs_transport
from sgc_config.settings import Settings

# Every process that builds broker options (SCP, workers, `celery -A worker.celery_app`) imports
# this module, so the embedded transport's URL scheme is known to kombu wherever it is used.
fs_transport.register()

#: Seconds between directory scans of the filesystem transport (measured ~0.1 s round trip).
FILESYSTEM_POLLING_INTERVAL = 0.1

#: URL query parameters that are transport options, not connection parameters: a key prefix
#: lets several nodes (or test sessions) share one Redis without seeing each other's queues.
_URL_TRANSPORT_OPTIONS = ("global_keyprefix",)


def broker_options(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The broker URL and kombu transport options for ``settings``.

    Filesystem transport (``filesystem://``, the embedded default): served by
    :mod:`sgc_config.fs_transport` (``sgcfs://``); messages are files in ``broker_dir/queue``,
    claimed ones in ``claimed/``, unreadable ones in ``quarantine/`` (the folders are created
    here so a sender that starts before any worker does not fail). Redis: the visibility
    timeout equals ``settings.resend_after``, the node's one deadline for "work that should
    have finished": a message unacknowledged for that long (its worker was killed) is
    delivered again, and the tasks' atomic claims make a duplicate harmless.
    """
    url = settings.resolved_broker_url
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("filesystem", fs_transport.SCHEME):
        return f"{fs_transport.SCHEME}://", filesystem_options(settings.broker_dir)
    if scheme in ("redis", "rediss", "sentinel"):
        url, options = _split_transport_options(url)
        visibility = max(1.0, float(settings.resend_after))
        options.setdefault("visibility_timeout", visibility)
        # Sweep for abandoned messages a few times per timeout (kombu's default is ~100 s).
        options.setdefault("unacked_restore_interval", int(min(10.0, max(1.0, visibility / 3))))
        options.setdefault("unacked_restore_throttle", 1)
        return url, options
    return url, {}


def filesystem_options(
    folder: Path, polling_interval: float = FILESYSTEM_POLLING_INTERVAL
) -> dict[str, Any]:
    """The filesystem transport's options with its folders under ``folder`` (created here, so
    a sender that starts before any worker does not fail). Shared with
    benchmarks/broker_stress.py, so the benchmark measures the node's layout."""
    folders = {
        name: folder / name for name in ("queue", "processed", "claimed", "quarantine", "control")
    }
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "claimed_folder": str(folders["claimed"]),
        "quarantine_folder": str(folders["quarantine"]),
        # kombu keeps its exchange table in ./control unless told: keep it in the data dir.
        "control_folder": str(folders["control"]),
        "store_processed": False,
        "polling_interval": polling_interval,
    }


def _split_transport_options(url: str) -> tuple[str, dict[str, Any]]:
    """Move the transport-option query parameters out of ``url``."""
    parts = urlsplit(url)
    kept, options = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _URL_TRANSPORT_OPTIONS:
            options[key] = value
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), options
