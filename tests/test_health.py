"""Heartbeats, `inspector status` (its exit code is what a cron job or a healthcheck reads),
readiness, and the JSON log lines of long-running commands."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector import health, logs
from inspector.cli import main
from inspector.config import HealthSettings, Settings
from inspector.store import migrate
from inspector.store.db import session_scope
from inspector.store.models import Frame, Heartbeat, utcnow


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=str(tmp_path / "data"), health=HealthSettings(heartbeat_seconds=0.05))
    migrate.upgrade(settings.db_url)
    return settings


def env(settings: Settings) -> dict[str, str]:
    return {"INSPECTOR_DATA_DIR": settings.data_dir}


def test_a_beating_process_is_up_then_stopped(settings: Settings) -> None:
    with health.beating(settings, "watcher", "cam1", lambda: "watching /in"):
        report = health.summary(settings)
        assert [(p.kind, p.name, p.state, p.doing) for p in report.processes] == [
            ("watcher", "cam1", "up", "watching /in")
        ]
        assert report.ok and health.readiness(settings) == (True, {"database": "ok", "schema": "ok"})
        result = CliRunner().invoke(main, ["status", "--process", "watcher"], env=env(settings))
        assert result.exit_code == 0, result.output
    (process,) = health.summary(settings).processes
    assert process.state == "stopped"
    assert health.summary(settings).ok  # a clean stop is no problem...
    result = CliRunner().invoke(main, ["status", "--process", "watcher"], env=env(settings))
    assert result.exit_code == 1 and "no watcher beats" in result.output  # ...but no watcher beats


def test_a_silent_process_is_down_and_status_fails(settings: Settings) -> None:
    with session_scope(settings.db_url) as session:
        long_ago = utcnow() - timedelta(minutes=5)
        session.add(Heartbeat(kind="worker", name="gpu0@box", host="box", pid=7, beat_at=long_ago, doing=""))
    result = CliRunner().invoke(main, ["status"], env=env(settings))
    assert result.exit_code == 1
    assert "worker gpu0@box on box (pid 7) is down: last beat 5 min ago" in result.output
    data = json.loads(CliRunner().invoke(main, ["status", "--json"], env=env(settings)).output)
    assert data["ok"] is False and data["processes"][0]["state"] == "down"


def test_a_process_on_a_host_whose_clock_is_off_is_up(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's host ten minutes behind the host that asks: beats and ages are both the
    database's clock, so the worker is up (by the asker's clock it would be down)."""
    monkeypatch.setattr(health, "utcnow", lambda: utcnow() + timedelta(minutes=10))  # the asker's host
    with health.beating(settings, "worker", "gpu0@box"):
        (process,) = health.summary(settings).processes
        assert process.state == "up" and process.beat_age < 60


def test_an_old_backlog_fails_status(settings: Settings) -> None:
    with session_scope(settings.db_url) as session:
        registered = utcnow() - timedelta(minutes=20)
        session.add(
            Frame(
                content_hash="a" * 64,
                path="/in/a.png",
                size_bytes=1,
                landed_at=registered,
                registered_at=registered,
            )
        )
    report = health.summary(settings)
    assert report.backlog.by_status == {"pending": 1, "queued": 0, "processing": 0}
    assert report.problems == ["1 frames wait to be scored, the oldest for 20 min (limit 5 min)"]
    assert CliRunner().invoke(main, ["status"], env=env(settings)).exit_code == 1


def test_readiness_needs_the_schema_and_optionally_a_watcher(settings: Settings, tmp_path: Path) -> None:
    settings.health.require_watcher = True
    ready, checks = health.readiness(settings)
    assert not ready and checks["watcher"] == "0 live"
    with health.beating(settings, "watcher", "cam1"):
        assert health.readiness(settings)[0]
    unmigrated = Settings(data_dir=str(tmp_path / "other"))
    ready, checks = health.readiness(unmigrated)
    assert not ready and checks["schema"] == f"at nothing, expected {migrate.head_revision()}"


def test_json_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    try:
        log = logging.getLogger("inspector.test")
        log.info("sent %d alerts", 3, extra={"source": "cam1", "delivery": "abc"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        assert logs.current_format() == "json"
    finally:
        logs.configure("WARNING", "text")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert (
        first["message"] == "sent 3 alerts"
        and first["level"] == "INFO"
        and first["logger"] == "inspector.test"
    )
    assert (first["source"], first["delivery"]) == ("cam1", "abc") and first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exception"]
