"""Alerts against real receivers: a local HTTP server and a private Mosquitto broker.

The outbox rows are made by the same function the scoring transaction calls; the end-to-end
path (a real watcher scoring frames and its dispatcher thread delivering) is in test_operations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import func, select

from inspector.cli import main
from inspector.config import AlertSettings, Settings
from inspector.maps import MAP_KINDS
from inspector.pipeline import alerts, thresholds
from inspector.pipeline.process import get_detector, process_frames
from inspector.store import migrate, operations, queries
from inspector.store.db import session_scope
from inspector.store.models import AlertOutbox, AlertState, Frame, Model, Result
from tests.pipeline.conftest import write_frames
from tests.receivers import Broker, subscribed, webhook_receiver
from tests.web.conftest import METHOD, Seeded, seed

SECRET = "s3cret"


def with_alerts(seeded: Seeded, **values: object) -> Settings:
    options = dict(
        public_url="https://inspect.example", webhook_secret=SECRET, retry_seconds=0.05, cooldown_seconds=0
    )
    options.update(values)
    return dataclasses.replace(seeded.settings, alerts=AlertSettings(**options))


def flag(settings: Settings, frame_ids: list[int]) -> None:
    """Queue the seeded flagged results of these frames, as the scoring transaction does."""
    with session_scope(settings.db_url) as session:
        alerts.queue(session, settings, "v1", METHOD, frame_ids)


def flagged_frames(seeded: Seeded, source: str) -> list[int]:
    with session_scope(seeded.settings.db_url) as session:
        stmt = (
            select(Frame.id)
            .join(Result, Result.frame_id == Frame.id)
            .where(Result.is_anomaly.is_(True), Frame.source == source)
            .order_by(Frame.id)
        )
        return list(session.scalars(stmt))


def undelivered(settings: Settings) -> int:
    with session_scope(settings.db_url) as session:
        return session.scalar(
            select(func.count()).select_from(AlertOutbox).where(AlertOutbox.sent_at.is_(None))
        )


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed(tmp_path / "data")


def test_webhook_digest_signature_and_links(seeded: Seeded) -> None:
    with webhook_receiver() as hook:
        settings = with_alerts(seeded, webhook_url=hook.url, digest_items=3)
        cam_a, cam_b = flagged_frames(seeded, "cam-a"), flagged_frames(seeded, "cam-b")
        flag(settings, cam_a + cam_b)
        flag(settings, cam_a)  # queued once per result and channel, however often asked
        assert undelivered(settings) == len(cam_a) + len(cam_b)

        assert alerts.Dispatcher(settings).dispatch_once() == 2  # one digest per source
        by_source = {d.json["source"]: d for d in hook.wait_for(2)}
    digest = by_source["cam-a"]
    body = digest.json
    timestamp = digest.headers["X-Inspector-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + digest.body, hashlib.sha256).hexdigest()
    assert digest.headers["X-Inspector-Signature"] == f"sha256={expected}"
    assert abs(int(timestamp) - time.time()) < 60
    assert body["digest"] is True and body["count"] == len(cam_a) and len(body["frames"]) == 3
    top = body["frames"][0]
    assert top["score"] == body["max_score"] == max(f["score"] for f in body["frames"])
    assert (top["threshold"], top["model_version"], top["method"]) == (0.5, "v1", METHOD)
    assert top["frame_id"] in cam_a
    assert top["url"] == f"https://inspect.example/results/{top['result_id']}"
    assert top["maps"]["error"] == f"https://inspect.example/maps/{top['result_id']}/error.png"
    assert set(top["maps"]) == set(MAP_KINDS)
    assert body["queue_url"] == "https://inspect.example/queue?source=cam-a"
    assert undelivered(settings) == 0
    assert alerts.Dispatcher(settings).dispatch_once() == 0  # nothing twice


def test_cooldown_gathers_a_burst_into_one_digest(seeded: Seeded) -> None:
    with webhook_receiver() as hook:
        settings = with_alerts(seeded, webhook_url=hook.url, cooldown_seconds=0.6)
        first, *burst = flagged_frames(seeded, "cam-b")
        dispatcher = alerts.Dispatcher(settings)
        flag(settings, [first])
        assert dispatcher.dispatch_once() == 1  # the first flag at once, alone
        flag(settings, burst)
        assert dispatcher.dispatch_once() == 0  # the rest waits out the cooldown...
        time.sleep(0.7)
        assert dispatcher.dispatch_once() == 1  # ...and goes as one message
        single, digest = (d.json for d in hook.wait_for(2))
    assert (single["digest"], single["count"]) == (False, 1)
    assert (digest["digest"], digest["count"]) == (True, len(burst))


def test_a_receiver_outage_loses_nothing(seeded: Seeded) -> None:
    with webhook_receiver() as hook:
        settings = with_alerts(seeded, webhook_url=hook.url, retry_seconds=0.2)
        flag(settings, flagged_frames(seeded, "cam-a"))
        hook.status = 503
        dispatcher = alerts.Dispatcher(settings)
        assert dispatcher.dispatch_once() == 0
        with session_scope(settings.db_url) as session:
            state = session.get(AlertState, ("webhook", "cam-a"))
            assert state.failures == 1 and state.retry_at is not None
            errors = set(session.scalars(select(AlertOutbox.last_error)))
        assert errors == {"HTTP 503 from the webhook"}
        assert dispatcher.dispatch_once() == 0  # backing off: not tried again at once
        hook.status = 200
        time.sleep(0.25)
        assert dispatcher.dispatch_once() == 1
        assert hook.wait_for(1)[0].json["count"] == len(flagged_frames(seeded, "cam-a"))
    assert undelivered(settings) == 0
    assert dispatcher.backoff(1) == 0.2 and dispatcher.backoff(4) == 1.6
    assert alerts.Dispatcher(with_alerts(seeded, max_retry_seconds=1)).backoff(10) == 1


def test_mqtt_topic_per_source_at_qos_1(seeded: Seeded, broker: Broker) -> None:
    settings = with_alerts(seeded, mqtt_host="127.0.0.1", mqtt_port=broker.port, mqtt_topic="factory/flags")
    flag(settings, flagged_frames(seeded, "cam-a") + flagged_frames(seeded, "cam-b"))
    dispatcher = alerts.Dispatcher(settings)
    with subscribed(broker.port, "factory/flags/#") as received:
        assert dispatcher.dispatch_once() == 2
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    dispatcher.close()
    assert {m.topic for m in received} == {"factory/flags/cam-a", "factory/flags/cam-b"}
    assert all(m.qos == 1 for m in received)
    assert {json.loads(m.payload)["source"] for m in received} == {"cam-a", "cam-b"}
    assert alerts.Mqtt(settings.alerts).topic("line/1#+") == "factory/flags/line_1__"


def test_mqtt_broker_outage_then_delivery(seeded: Seeded, broker: Broker) -> None:
    settings = with_alerts(seeded, mqtt_host="127.0.0.1", mqtt_port=broker.port, webhook_timeout=1.0)
    flag(settings, flagged_frames(seeded, "cam-a"))
    broker.stop()
    dispatcher = alerts.Dispatcher(settings)
    assert dispatcher.dispatch_once() == 0
    assert undelivered(settings) == len(flagged_frames(seeded, "cam-a"))
    broker.start()
    time.sleep(0.1)
    with subscribed(broker.port, "inspector/flagged/#") as received:
        assert dispatcher.dispatch_once() == 1
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
    dispatcher.close()
    assert json.loads(received[0].payload)["count"] == len(flagged_frames(seeded, "cam-a"))
    assert undelivered(settings) == 0


def test_two_dispatchers_never_send_the_same_flags(seeded: Seeded) -> None:
    with webhook_receiver() as hook:
        settings = with_alerts(seeded, webhook_url=hook.url, cooldown_seconds=60)
        flag(settings, flagged_frames(seeded, "cam-a"))
        first, second = alerts.Dispatcher(settings), alerts.Dispatcher(settings)
        second.owner = "another-host:1:1"
        with session_scope(settings.db_url) as session:  # the first holds cam-a (say, mid-delivery)
            lease = operations.utcnow() + timedelta(seconds=30)
            assert operations.lease_group(session, "webhook", "cam-a", first.owner, lease, lease)
        assert second.dispatch_once() == 0
        assert first.dispatch_once() == 1
        assert second.dispatch_once() == 0  # cooling down now
    assert len(hook.deliveries) == 1


def test_scoring_queues_flags_in_the_results_commit(embedded: Settings, tmp_path: Path) -> None:
    """The real scoring step: every flagged result gets one outbox row per channel, in its commit."""
    settings = dataclasses.replace(
        embedded, alerts=AlertSettings(webhook_url="http://127.0.0.1:9/none", mqtt_host="127.0.0.1")
    )
    rows = [
        dict(
            content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
            path=str(path),
            source="cam",
            size_bytes=path.stat().st_size,
            landed_at=operations.utcnow(),
        )
        for path in write_frames(tmp_path / "in", 6)
    ]
    with session_scope(settings.db_url) as session:
        ids = sorted(queries.insert_frames(session, rows).values())
    detector = get_detector(settings)
    with session_scope(settings.db_url) as session:  # cam's threshold 0: every frame is flagged
        queries.ensure_model(
            session,
            version=detector.version,
            method=detector.method,
            path="m.pt",
            default_threshold=1.0,
            config={},
        )
        thresholds.set_threshold(session, "cam", detector.version, detector.method, 0.0, "test")
    process_frames(ids[:4], settings)
    process_frames(ids, settings)  # the first four again: nothing new to queue for them
    with session_scope(settings.db_url) as session:
        rows = session.execute(select(AlertOutbox.channel, func.count()).group_by(AlertOutbox.channel)).all()
    assert dict(rows) == {"webhook": 6, "mqtt": 6}


def test_only_the_scoring_models_flags_are_queued(seeded: Seeded) -> None:
    """A frame flagged under another (version, method) (a model scored beside the live one) is not
    alerted by the live model's commit: alerts are per result, and a result is its model's."""
    cam_b = flagged_frames(seeded, "cam-b")
    with session_scope(seeded.settings.db_url) as session:
        session.add(Model(version="v1", method="vaegan", path="m.pt", default_threshold=0.01, config={}))
        session.flush()
        session.add_all(
            Result(
                frame_id=i, model_version="v1", method="vaegan", score=1.0, threshold=0.01, is_anomaly=True
            )
            for i in cam_b
        )
    settings = with_alerts(seeded, webhook_url="http://127.0.0.1:9/none")
    flag(settings, cam_b)
    with session_scope(settings.db_url) as session:
        queued = session.execute(
            select(Result.model_version, Result.method)
            .join(AlertOutbox, AlertOutbox.result_id == Result.id)
            .distinct()
        ).all()
    assert queued == [("v1", METHOD)] and undelivered(settings) == len(cam_b)


def test_alerts_dispatch_command(seeded: Seeded) -> None:
    command.stamp(migrate.alembic_config(seeded.settings.db_url), "head")  # seeded without Alembic
    with webhook_receiver() as hook:
        settings = with_alerts(seeded, webhook_url=hook.url)
        flag(settings, flagged_frames(seeded, "cam-b"))
        env = {"INSPECTOR_DATA_DIR": settings.data_dir, "INSPECTOR_ALERTS__WEBHOOK_URL": hook.url}
        result = CliRunner().invoke(main, ["alerts", "dispatch", "--once"], env=env)
        assert result.exit_code == 0 and "1 messages delivered" in result.output, result.output
        assert hook.wait_for(1)[0].json["source"] == "cam-b"
    off = CliRunner().invoke(main, ["alerts", "dispatch"], env={"INSPECTOR_DATA_DIR": settings.data_dir})
    assert off.exit_code == 1 and "no alert channel configured" in off.output
