"""The distributed mode's Celery, in one place: the app, the scoring task, the sender and the ping.

Redis broker, one queue (``settings.queue``), at-least-once delivery made safe by SQL: late
acknowledgement plus ``task_reject_on_worker_lost`` puts a batch back on the queue when its
worker process dies; prefetch 1 keeps a dead worker from holding more than the batch it was
on. Delivery may repeat, scoring may not: the task is a thin wrapper over
``process.process_frames``, which claims frames in SQL, and the result insert is idempotent.

Nothing reads settings at import: ``make_app`` takes them, so ``inspector worker`` builds
its app from its own ``--config`` and runs it beside its heartbeat and metrics (``run_worker``;
``workers/app.py`` is the entry of Celery's own command line). Celery, and the scorer with
torch, are imported on use: the dashboard pings the workers without loading either.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from inspector.config import Settings
from inspector.store.db import dispose_engines

if TYPE_CHECKING:
    from celery import Celery, Task

log = logging.getLogger(__name__)

SCORE_TASK = "inspector.score_batch"
# Database restarts, network blips, a full or remounted shared volume: worth another try.
TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, OSError)


def make_app(settings: Settings) -> Celery:
    """The Celery app of these settings, with the scoring task registered: the workers' app and
    the sender's are the same."""
    from celery import Celery
    from celery.signals import worker_process_init

    app = Celery("inspector", broker=settings.broker_url, set_as_current=False)
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
    worker_process_init.connect(_fresh_connections)

    @app.task(
        bind=True,
        shared=False,  # this app's alone: every app made here registers its own
        name=SCORE_TASK,
        autoretry_for=TRANSIENT,
        retry_backoff=2,
        retry_backoff_max=120,
        retry_jitter=True,
        max_retries=8,
    )
    def score_batch(task: Task, frame_ids: list[int]) -> dict[str, int]:
        """Score a batch of registered frames by id; the model stays loaded between batches.

        The task id is the claimant: a redelivery (late ack, worker lost) or a retry carries
        the same id, so it resumes its own claimed frames at once.
        """
        from inspector.pipeline.process import process_frames

        return dataclasses.asdict(process_frames(frame_ids, settings, claimant=task.request.id))

    return app


def run_worker(
    settings: Settings, hostname: str, pool: str, loglevel: str, log_format: str, metrics_port: int | None
) -> None:
    """Run a worker of these settings on their queue, one task at a time, named ``hostname``
    (Celery's ``%h`` is this host), with what runs beside it: its heartbeat, and the metrics
    group its forked pool process counts into (``metrics_port``: served there too). With
    ``log_format`` json, Celery hands its logging to ours (one JSON object per line)."""
    import socket

    from celery.signals import setup_logging

    from inspector import logs
    from inspector.pipeline import housekeeping

    app = make_app(settings)
    if log_format == "json":  # Celery leaves logging alone when its setup_logging signal is answered
        setup_logging.connect(lambda **_: logs.configure(loglevel.upper(), "json"), weak=False)
    queue = settings.queue
    argv = ["worker", "--queues", queue, "--concurrency", "1", "--pool", pool, "--loglevel", loglevel]
    label = hostname.replace("%h", socket.gethostname())
    with housekeeping.alongside(settings, "worker", label, lambda: f"consuming queue {queue}", metrics_port):
        app.worker_main([*argv, "--hostname", hostname])


def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not share the parent's database connections."""
    dispose_engines()


def batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), max(1, size))]


class CeleryExecutor:
    """Send batches of ids to the workers' queue (settings.queue) through the broker.

    A frame is committed as queued before its message is sent, so a message can be lost with
    the frame still queued: a send that failed (the broker away), a broker that restarted
    without its queue, a watcher that died between the commit and the send. Then every queued
    frame is sent again (``messages_lost``); a repeated delivery scores nothing twice.
    """

    exclusive = False

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app = make_app(settings)
        self._broker_id: str | None = None  # the broker instance the messages went to
        self._lost = True  # at start: frames an earlier watcher queued may have lost their messages

    def messages_lost(self) -> bool:
        """Whether messages of frames queued earlier may be gone: at start, after a failed send, or
        once the broker restarted (a Redis answers with a new run id) or cannot be asked."""
        broker_id = broker_instance(self.settings.broker_url)
        if broker_id is None or broker_id != self._broker_id:
            self._lost = True
        self._broker_id = broker_id
        return self._lost

    def submit(self, frame_ids: Sequence[int]) -> None:
        try:
            for batch in batches(frame_ids, self.settings.watch.batch_size):
                self.app.send_task(SCORE_TASK, args=[batch], queue=self.settings.queue)
        except Exception:
            self._lost = True  # the next recover sends every queued frame again
            raise
        self._lost = False
        log.info("sent %d frames to the %r queue", len(frame_ids), self.settings.queue)

    def wake(self, frames: int) -> None:
        """Nothing to wake: the watcher sends what it registered."""

    def close(self) -> None:
        self.app.close()


def broker_instance(broker_url: str) -> str | None:
    """Which running broker the URL reaches: a Redis's run id (new at each start), None when it
    does not answer; other brokers keep their queues (the URL stands for them)."""
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return broker_url
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)
        with client:
            return str(client.info("server")["run_id"])
    except (redis.RedisError, OSError, KeyError):
        return None


@dataclass(frozen=True)
class WorkerStatus:
    ok: bool
    summary: str
    workers: tuple[str, ...] = ()


def ping_workers(broker_url: str, timeout: float) -> WorkerStatus:
    """Which workers answer on the broker: any Celery client may ask, so no task is loaded."""
    from celery import Celery

    app = Celery("inspector-ping", broker=broker_url, set_as_current=False)
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_timeout = timeout
    app.conf.broker_transport_options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception as exc:  # any broker failure is a status to show, not a crash
        return WorkerStatus(False, f"broker unreachable ({type(exc).__name__}: {exc})")
    finally:
        app.close()
    names = tuple(sorted(name for reply in replies for name in reply))
    if not names:
        return WorkerStatus(False, "no Celery worker answered")
    return WorkerStatus(True, f"{len(names)} Celery worker(s) answered", names)
