"""Thin Celery tasks over the pipeline's plain functions."""

from __future__ import annotations

import dataclasses

from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from inspector.pipeline.executors import SCORE_TASK
from inspector.pipeline.process import process_frames
from workers.app import app, settings

# Database restarts, network blips, a full or remounted shared volume: worth another try.
TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, OSError)


@app.task(
    bind=True,
    name=SCORE_TASK,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def score_batch(self: Task, frame_ids: list[int]) -> dict[str, int]:
    """Score a batch of registered frames by id; the model stays loaded between batches.

    The task id is the claimant: a redelivery (late ack, worker lost) or a retry carries
    the same id, so it resumes its own claimed frames at once.
    """
    return dataclasses.asdict(process_frames(frame_ids, settings, claimant=self.request.id))
