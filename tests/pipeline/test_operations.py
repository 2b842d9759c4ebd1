"""The operator's view, started as a user starts it: `inspector watch` in its own process with
--metrics-port, JSON logs and a webhook and MQTT broker to alert; `inspector status` beside it.

Frames land, some flagged (the source's threshold is 0 for half of them): the webhook and the
broker hear of them, the watcher's port and the dashboard's /metrics count them (parsed with
prometheus_client's own parser), its heartbeat says it is up, and after SIGTERM it stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from inspector.cli import main
from inspector.config import Settings
from inspector.store.db import session_scope
from inspector.store.models import Heartbeat
from inspector.web import create_app
from tests.pipeline.conftest import counts, settings_env, until, write_frames
from tests.receivers import Broker, free_port, subscribed, webhook_receiver

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels (the process label dropped)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "process"))
            found[(sample.name, labels)] = found.get((sample.name, labels), 0.0) + sample.value
    return found


def test_watcher_alerts_counts_and_beats(embedded: Settings, tmp_path: Path, broker: Broker) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    runner = CliRunner()
    env = settings_env(embedded)
    # A first frame, scored once, registers the model; then cam's threshold goes to 0: all flagged.
    write_frames(incoming, 1, seed=9, prefix="first")
    assert runner.invoke(main, ["watch", str(incoming), "--once", "--source", "cam"], env=env).exit_code == 0
    result = runner.invoke(main, ["threshold", "set", "0", "--source", "cam", "--by", "test"], env=env)
    assert result.exit_code == 0, result.output

    port = free_port()
    with webhook_receiver() as hook, subscribed(broker.port, "inspector/flagged/#") as heard:
        env |= {
            "INSPECTOR_ALERTS__WEBHOOK_URL": hook.url,
            "INSPECTOR_ALERTS__MQTT_HOST": "127.0.0.1",
            "INSPECTOR_ALERTS__MQTT_PORT": str(broker.port),
            "INSPECTOR_ALERTS__COOLDOWN_SECONDS": "30",
            "INSPECTOR_ALERTS__PUBLIC_URL": "https://inspect.example",
            "INSPECTOR_HEALTH__HEARTBEAT_SECONDS": "0.5",
            "INSPECTOR_WATCH__SCORERS": "2",  # spawned scorer processes count into the group
        }
        command = [
            str(Path(sys.executable).with_name("inspector")),
            "watch",
            str(incoming),
            "--source",
            "cam",
        ]
        command += ["--log-format", "json", "--metrics-port", str(port)]
        log = tmp_path / "watch.log"
        with log.open("w") as err:
            watcher = subprocess.Popen(command, env=os.environ | env, stderr=err, stdout=subprocess.DEVNULL)
        try:
            until(lambda: _beating(embedded), 60)
            assert _beating(embedded), log.read_text()
            write_frames(incoming, 8, seed=3)
            until(lambda: counts(embedded.db_url)[0] == 9, 60)
            assert counts(embedded.db_url)[0] == 9, log.read_text()
            hook.wait_for(1)
            until(lambda: len(heard) >= 1, 10)
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            status = runner.invoke(main, ["status", "--json"], env=env)
        finally:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait(timeout=60)
    # Alerts: the first flag at once; the others wait out the 30 s cooldown as one digest.
    first = hook.deliveries[0].json
    assert first["source"] == "cam" and first["frames"][0]["url"].startswith(
        "https://inspect.example/results/"
    )
    assert json.loads(heard[0].payload)["source"] == "cam" and heard[0].topic == "inspector/flagged/cam"
    # The watcher's own port: its group (the watcher and its two scorer processes) and the SQL gauges.
    own = samples(scraped)
    assert own[("inspector_frames_registered_total", (("source", "cam"),))] == 8
    assert own[("inspector_frames_scored_total", (("source", "cam"),))] == 8
    assert own[("inspector_frames_flagged_total", (("source", "cam"),))] == 8
    assert own[("inspector_frame_latency_seconds_count", (("source", "cam"),))] == 8
    assert own[("inspector_frame_score_count", (("source", "cam"),))] == 8
    assert own[("inspector_queue_frames", (("status", "pending"),))] == 0
    # The dashboard's /metrics after the watcher stopped: its counts stay until the group goes stale.
    fleet = samples(TestClient(create_app(embedded)).get("/metrics").text)
    assert fleet[("inspector_frames_scored_total", (("source", "cam"),))] == 9  # the --once run too
    assert [dict(labels)["method"] for name, labels in fleet if name == "inspector_model_info"] == [
        "vaegan-attn"
    ]
    assert ("inspector_alerts_oldest_undelivered_seconds", ()) in fleet
    # JSON logs, one object a line, with the extra fields of the alert lines.
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and {"time", "level", "logger", "message"} <= set(lines[0])
    sent = [line for line in lines if line["logger"] == "inspector.pipeline.alerts"]
    assert sent and sent[0]["source"] == "cam" and sent[0]["channel"] in ("webhook", "mqtt")
    # Status while it ran: the watcher up; after SIGTERM: stopped, and status is still fine.
    assert status.exit_code == 0, status.output
    running = json.loads(status.output)
    states = sorted((p["kind"], p["state"]) for p in running["processes"])
    assert states == [("watcher", "stopped"), ("watcher", "up")]  # the --once run, and this one
    after = runner.invoke(main, ["status"], env=env)
    assert "watcher    stopped" in after.output and after.exit_code == 0, after.output


def _beating(settings: Settings) -> bool:
    with session_scope(settings.db_url) as session:
        return session.query(Heartbeat).filter(Heartbeat.stopped_at.is_(None)).count() > 0
