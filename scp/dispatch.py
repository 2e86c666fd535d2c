"""Handing work to the workers through the Celery broker, by task name only.

Why by name: the SCP must never import worker code (and through it torch). A task message
names ``sgc.classify_study`` or ``sgc.deliver_report`` and carries a database id; the
database row is the truth, the message only says "look at row N". The broker configuration
comes from :func:`sgc_config.broker.broker_options` (re-exported here), the one builder the SCP
and the workers share, so both reach the same queues.
"""

from __future__ import annotations

import logging

from celery import Celery

from sgc_config.broker import broker_options
from sgc_config.names import CLASSIFY_QUEUE, CLASSIFY_TASK, DELIVER_QUEUE, DELIVER_TASK
from sgc_config.settings import Settings

__all__ = ["Dispatcher", "broker_options", "make_producer"]

log = logging.getLogger(__name__)


def make_producer(settings: Settings) -> Celery:
    """A Celery app that only sends: no tasks registered, no result backend."""
    url, options = broker_options(settings)
    app = Celery("sgc-scp", broker=url, set_as_current=False)
    app.conf.broker_transport_options = options
    app.conf.broker_connection_timeout = 3.0
    app.conf.broker_connection_retry_on_startup = False
    app.conf.task_ignore_result = True
    return app


class Dispatcher:
    """Sends one task message per call; raises when the broker cannot take it."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, task: str, row_id: int, queue: str) -> str:
        """Publish ``task(row_id)`` on ``queue``; return the message id."""
        result = self.app.send_task(task, args=[row_id], queue=queue, retry=False)
        return result.id

    def classify(self, job_id: int) -> str:
        return self.send(CLASSIFY_TASK, job_id, CLASSIFY_QUEUE)

    def deliver(self, report_id: int) -> str:
        """The deliver task takes a Report id and serves every pending destination of it."""
        return self.send(DELIVER_TASK, report_id, DELIVER_QUEUE)

    def close(self) -> None:
        self.app.close()
