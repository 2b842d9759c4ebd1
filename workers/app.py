"""The Celery app: Redis broker, one queue (`gpu`), at-least-once delivery made safe by SQL.

Late acknowledgement plus ``task_reject_on_worker_lost`` puts a batch back on the queue
when its worker process dies; prefetch 1 keeps a dead worker from holding more than the
batch it was on. Delivery may repeat, scoring may not: process_frames claims frames in
SQL and the result insert is idempotent. Settings come from INSPECTOR_CONFIG and the
INSPECTOR_* environment, as for every other face.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from inspector.config import load_settings
from inspector.pipeline.executors import SCORE_TASK
from inspector.store.db import dispose_engines

settings = load_settings()

app = Celery("inspector", broker=settings.broker_url, include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=settings.queue,
    task_routes={SCORE_TASK: {"queue": settings.queue}},
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    # An unacknowledged batch goes back to the queue after this long (its worker vanished
    # with the whole host); the watcher re-queues frames stuck in flight on the same clock.
    broker_transport_options={"visibility_timeout": max(60, int(settings.watch.stale_seconds))},
    worker_hijack_root_logger=False,
)


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections."""
    dispose_engines()
