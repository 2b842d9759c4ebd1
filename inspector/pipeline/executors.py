"""Where scoring runs: in the watcher's process (inline) or on Celery workers (celery).

Both score through the same claim-and-score step of ``pipeline.process``: Celery workers
take batches of frame ids (never pixels) in :func:`process_frames`, the Celery task in
workers/ being a thin wrapper over it registered under :data:`SCORE_TASK`; inline scorers
pull the next waiting batch themselves (:func:`process_next`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from inspector.config import Settings
from inspector.pipeline.process import Outcome, process_next

log = logging.getLogger(__name__)

SCORE_TASK = "inspector.score_batch"


def batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), max(1, size))]


class Executor(Protocol):
    # True when this process is the only one scoring: frames it finds in flight at start
    # were orphaned by its own previous run and can be taken back at once.
    exclusive: bool

    def submit(self, frame_ids: Sequence[int]) -> Outcome | None:
        """Hand over frames already committed as 'queued'."""
        ...


class InlineExecutor:
    """The embedded default: score in this process.

    ``watch.threads`` scorers each pull the next batch of waiting frames from the database
    until none is left, frames registered meanwhile included, so a backlog keeps every
    scorer busy instead of waiting at the end of each hand-over for the slowest batch.
    """

    exclusive = True

    def __init__(self, settings: Settings):
        self.settings = settings

    def submit(self, frame_ids: Sequence[int]) -> Outcome:
        """Score these frames and every other waiting one; returns when none is left."""

        def drain() -> Outcome:
            total = Outcome()
            while (outcome := process_next(self.settings)) is not None:
                total.add(outcome)
            return total

        threads = max(1, self.settings.watch.threads)
        if threads == 1:
            return drain()
        with ThreadPoolExecutor(threads, thread_name_prefix="score") as pool:
            outcomes = [future.result() for future in [pool.submit(drain) for _ in range(threads)]]
        total = Outcome()
        for outcome in outcomes:
            total.add(outcome)
        return total


class CeleryExecutor:
    """Send batches of ids to the workers' queue (settings.queue) through the broker."""

    exclusive = False

    def __init__(self, settings: Settings):
        from celery import Celery

        self.settings = settings
        self.app = Celery("inspector", broker=settings.broker_url, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = True

    def submit(self, frame_ids: Sequence[int]) -> None:
        for batch in batches(frame_ids, self.settings.watch.batch_size):
            self.app.send_task(SCORE_TASK, args=[batch], queue=self.settings.queue)
        log.info("sent %d frames to the %r queue", len(frame_ids), self.settings.queue)


def make_executor(settings: Settings) -> Executor:
    return CeleryExecutor(settings) if settings.executor == "celery" else InlineExecutor(settings)
