"""The Celery app of the node: `celery -A worker.celery_app worker -Q classify` (or `sgc worker`).

Why these settings: results go to our database, so there is no result backend. Tasks are
acknowledged late and rejected (re-queued) when their worker process dies, with a prefetch of
one, so a message is never lost with a worker and a long classification never hoards a second
job; the tasks' database claims make the resulting duplicates harmless. Queues: ``classify``
(GPU workers, ``--pool solo``, one process per GPU) and ``deliver`` (CPU).
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from sgc_config.broker import broker_options
from sgc_config.names import CLASSIFY_QUEUE, TASK_ROUTES
from sgc_config.settings import Settings, load_settings

log = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict:
    """The Celery configuration of a worker for ``settings``."""
    url, transport_options = broker_options(settings)
    return dict(
        broker_url=url,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_serializer="json",
        accept_content=["json"],
        task_routes=TASK_ROUTES,
        task_default_queue=CLASSIFY_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
    )


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings``; without them, configured from the environment lazily.

    Why lazily: importing this module (``celery -A worker.celery_app``, the task modules, the
    tests) must not read the environment nor create the broker's folders; the app reads them
    the first time its configuration is used.
    """
    app = Celery("sgc", include=["worker.tasks"])
    if settings is not None:
        app.sgc_settings = settings  # type: ignore[attr-defined]
    app.add_defaults(lambda: celery_config(settings_of(app)))
    return app


def settings_of(app: Celery) -> Settings:
    """The node settings an app was made with (apps made elsewhere read the environment)."""
    settings = getattr(app, "sgc_settings", None)
    if settings is None:
        settings = load_settings()
        app.sgc_settings = settings  # type: ignore[attr-defined]
    return settings


app = make_celery()

# --- load the model once per process, at start ----------------------------------------------

_preload = {"classify": False}


def _preload_model(settings: Settings) -> None:
    from worker.runtime import ModelUnavailable, classifier_for

    try:
        classifier_for(settings)
    except ModelUnavailable as exc:
        # Not fatal: the SCP keeps receiving, and each classify task records this error.
        log.error("%s", exc)


@signals.worker_init.connect
def _on_worker_init(sender=None, **_: object) -> None:
    """Decide whether this worker classifies; solo/threads pools load the model right here."""
    queues = set(getattr(sender.app.amqp.queues, "consume_from", None) or {})
    _preload["classify"] = CLASSIFY_QUEUE in queues
    pool = str(getattr(sender, "pool_cls", "")).lower()
    if _preload["classify"] and ("solo" in pool or "thread" in pool):
        _preload_model(settings_of(sender.app))


@signals.worker_process_init.connect
def _on_worker_process_init(**_: object) -> None:
    """Prefork children load their own copy after the fork (CUDA does not survive a fork)."""
    if _preload["classify"]:
        _preload_model(settings_of(app))
