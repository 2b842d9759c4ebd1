"""The Celery settings that make delivery safe; the behaviour itself is in test_distributed."""

from __future__ import annotations

from inspector.config import Settings
from inspector.pipeline.distributed import SCORE_TASK, TRANSIENT, CeleryExecutor, make_app
from inspector.pipeline.executors import InlineExecutor, make_executor


def test_celery_app_acknowledges_late_one_batch_at_a_time_on_the_settings_queue() -> None:
    app = make_app(Settings(queue="line-3"))
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_routes[SCORE_TASK] == {"queue": "line-3"} and conf.task_default_queue == "line-3"
    score_batch = app.tasks[SCORE_TASK]
    assert score_batch.autoretry_for == TRANSIENT and score_batch.retry_backoff


def test_the_command_line_entry_takes_the_environments_settings(monkeypatch) -> None:  # noqa: ANN001
    """`celery -A workers.app` reads INSPECTOR_* at import, as every face does; the package's
    own Celery home reads nothing at import (make_app takes the settings)."""
    import importlib

    monkeypatch.setenv("INSPECTOR_QUEUE", "from-env")
    import workers.app

    app = importlib.reload(workers.app).app
    assert app.conf.task_default_queue == "from-env" and SCORE_TASK in app.tasks


def test_the_executor_follows_the_settings() -> None:
    assert isinstance(make_executor(Settings()), InlineExecutor)
    assert isinstance(make_executor(Settings(executor="celery")), CeleryExecutor)


def test_the_worker_command_builds_its_app_from_its_own_config(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """`inspector --config FILE worker` needs no INSPECTOR_CONFIG in the environment."""
    import os

    from celery import Celery
    from click.testing import CliRunner

    from inspector.cli import main

    config = tmp_path / "settings.yaml"
    config.write_text(f"queue: line-7\ndata_dir: {tmp_path / 'data'}\n")  # its heartbeat's database
    seen: dict = {}
    monkeypatch.delenv("INSPECTOR_CONFIG", raising=False)
    monkeypatch.setattr(Celery, "worker_main", lambda app, argv: seen.update(app=app, argv=argv))
    result = CliRunner().invoke(main, ["--config", str(config), "worker", "--pool", "solo"])
    assert result.exit_code == 0, result.output
    assert seen["app"].conf.task_default_queue == "line-7" and "line-7" in seen["argv"]
    assert SCORE_TASK in seen["app"].tasks and "INSPECTOR_CONFIG" not in os.environ
