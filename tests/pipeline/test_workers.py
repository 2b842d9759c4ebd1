"""The Celery settings that make delivery safe; the behaviour itself is in test_distributed."""

from __future__ import annotations

from inspector.config import Settings
from inspector.pipeline.executors import SCORE_TASK, CeleryExecutor, InlineExecutor, make_executor


def test_celery_app_acknowledges_late_one_batch_at_a_time_on_the_gpu_queue() -> None:
    from workers.app import app
    from workers.tasks import TRANSIENT, score_batch

    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_routes[SCORE_TASK] == {"queue": Settings().queue} == {"queue": "gpu"}
    assert score_batch.name == SCORE_TASK
    assert score_batch.autoretry_for == TRANSIENT and score_batch.retry_backoff


def test_the_executor_follows_the_settings() -> None:
    assert isinstance(make_executor(Settings()), InlineExecutor)
    assert isinstance(make_executor(Settings(executor="celery")), CeleryExecutor)
