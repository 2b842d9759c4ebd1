"""Alerts on flagged frames: a webhook and MQTT, fed by an outbox in SQL.

Scoring never waits on a receiver: the transaction that stores a batch's results also queues
its flags in ``alert_outbox`` (:func:`queue`), so a flag is queued exactly when its result is
committed, and once (unique result and channel). A :class:`Dispatcher` (a thread of
`inspector watch`, or `inspector alerts dispatch`) delivers them and marks them sent; a failed
delivery is retried with exponential back-off, so an outage of the receiver loses nothing.

Per channel and source, a message starts a cooldown (``alerts.cooldown_seconds``): flags that
come meanwhile wait and go out together as one digest when it ends, so a burst of 500 flags
is two messages, not 500. Delivery is at least once: a dispatcher that dies between the
receiver's answer and its commit sends that message again, with the same ``delivery`` id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy.orm import Session

from inspector import metrics
from inspector.config import AlertSettings, Settings
from inspector.store import drift as drift_store
from inspector.store import operations
from inspector.store.db import session_scope
from inspector.store.models import DriftEvent, utcnow
from inspector.store.operations import PendingAlert

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Inspector-Signature"
TIMESTAMP_HEADER = "X-Inspector-Timestamp"
TOPIC_UNSAFE = re.compile(r"[+#/\x00]")
LEASE_SECONDS = 60.0  # a dispatcher that died holding a source lets it go after this


class DeliveryError(Exception):
    """The receiver did not take the message (refused, unreachable, no acknowledgement)."""


def queue(
    session: Session, settings: Settings, model_version: str, method: str, frame_ids: Sequence[int]
) -> None:
    """Queue the flags among these frames' results by this model (version and method) for every
    configured channel, in the caller's (the scoring) transaction. Nothing to do when no channel
    is configured. Only the live model's results are queued (the pipeline's ``store`` says which
    those are): a model scored beside it to be compared must never page anyone."""
    if settings.alerts.channels and frame_ids:
        operations.queue_alerts(session, settings.alerts.channels, model_version, method, frame_ids)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 over ``timestamp + "." + body`` (the timestamp
    signed too, so a captured message cannot be replayed later under a fresh one)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Channel(Protocol):
    name: str

    def send(self, source: str, body: bytes) -> None: ...

    def close(self) -> None: ...


class Webhook:
    """POST the JSON body, signed; any 2xx answer is a delivery."""

    name = "webhook"

    def __init__(self, settings: AlertSettings):
        self.settings = settings

    def send(self, source: str, body: bytes) -> None:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "inspector-alerts",
            TIMESTAMP_HEADER: timestamp,
        }
        if self.settings.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(self.settings.webhook_secret, timestamp, body)
        request = urllib.request.Request(self.settings.webhook_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.webhook_timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code} from the webhook") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"webhook unreachable: {getattr(exc, 'reason', exc)}") from exc

    def close(self) -> None:
        pass


class Mqtt:
    """Publish the JSON body at QoS 1 on ``<mqtt_topic>/<source>``; the broker's PUBACK is a delivery."""

    name = "mqtt"

    def __init__(self, settings: AlertSettings):
        self.settings = settings
        self._client: Any = None

    def topic(self, source: str) -> str:
        """One topic per source, its wildcard and separator characters replaced."""
        return self.settings.mqtt_topic.rstrip("/") + "/" + TOPIC_UNSAFE.sub("_", source)

    def _connect(self) -> Any:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"inspector-{socket.gethostname()}-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        if self.settings.mqtt_username:
            client.username_pw_set(self.settings.mqtt_username, self.settings.mqtt_password or None)
        if self.settings.mqtt_tls:
            client.tls_set()
        client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        client.loop_start()
        return client

    def send(self, source: str, body: bytes) -> None:
        try:
            self._client = self._client or self._connect()
            info = self._client.publish(self.topic(source), body, qos=1)
            info.wait_for_publish(timeout=self.settings.webhook_timeout)
            published = info.is_published()
        except (OSError, RuntimeError, ValueError) as exc:
            self.close()
            raise DeliveryError(f"MQTT broker unreachable: {exc}") from exc
        if not published:
            self.close()  # a fresh connection next time; its queue goes with this one
            raise DeliveryError(f"no PUBACK from the MQTT broker within {self.settings.webhook_timeout:g} s")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def message(
    settings: Settings,
    source: str,
    alerts: Sequence[PendingAlert],
    kinds: dict[int, list[str]],
    delivery: str,
) -> dict[str, Any]:
    """The JSON body: the source, how many flags and the highest score, and the top
    ``digest_items`` frames with absolute links to their pages and maps."""
    base = settings.dashboard_url
    shown = alerts[: max(1, settings.alerts.digest_items)]
    scored = [alert.scored_at for alert in alerts]
    return {
        "event": "inspector.flagged",
        "delivery": delivery,
        "source": source,
        "digest": len(alerts) > 1,
        "count": len(alerts),
        "max_score": alerts[0].score,
        "first_scored_at": _iso(min(scored)),
        "last_scored_at": _iso(max(scored)),
        "queue_url": f"{base}/queue?source={urllib.request.quote(source)}",
        "frames": [
            {
                "frame_id": alert.frame_id,
                "result_id": alert.result_id,
                "score": alert.score,
                "threshold": alert.threshold,
                "model_version": alert.model_version,
                "method": alert.method,
                "landed_at": _iso(alert.landed_at),
                "scored_at": _iso(alert.scored_at),
                "url": f"{base}/results/{alert.result_id}",
                "maps": {
                    kind: f"{base}/maps/{alert.result_id}/{kind}.png"
                    for kind in sorted(kinds.get(alert.result_id, []))
                },
            }
            for alert in shown
        ],
    }


def drift_message(
    settings: Settings, source: str, events: Sequence[DriftEvent], delivery: str
) -> dict[str, Any]:
    """The JSON body of a drift alert: the source, and each drift found (its model and test)."""
    return {
        "event": "inspector.drift",
        "delivery": delivery,
        "source": source,
        "count": len(events),
        "models_url": f"{settings.dashboard_url}/models?source={urllib.request.quote(source)}",
        "drifts": [
            {
                "watched": event.watched,
                "model_version": event.model_version,
                "method": event.method,
                "statistic": event.statistic,
                "p_value": event.p_value,
                "frames": event.frames,
                "detected_at": _iso(event.detected_at),
            }
            for event in events
        ],
    }


def make_channels(settings: AlertSettings) -> dict[str, Channel]:
    made: dict[str, Channel] = {}
    for name in settings.channels:
        made[name] = Webhook(settings) if name == "webhook" else Mqtt(settings)
    return made


class Dispatcher:
    """Delivers the outbox: one message per (channel, source) whose cooldown has passed, with every
    alert waiting there (one flag: a single alert; several: a digest)."""

    def __init__(self, settings: Settings, channels: dict[str, Channel] | None = None):
        self.settings = settings
        self.channels = make_channels(settings.alerts) if channels is None else channels
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:64]
        self.delivered = 0  # messages, for the heartbeat
        if self.channels and not settings.alerts.public_url:
            log.warning("alerts.public_url is not set: links in alerts point at %s", settings.server.host)

    def backoff(self, failures: int) -> float:
        alerts = self.settings.alerts
        return min(alerts.max_retry_seconds, alerts.retry_seconds * 2 ** (failures - 1))

    def dispatch_once(self) -> int:
        """Deliver what is due now; returns how many messages went out."""
        if not self.channels:
            return 0
        url, cooldown = self.settings.db_url, timedelta(seconds=self.settings.alerts.cooldown_seconds)
        with session_scope(url) as session:
            groups = operations.pending_groups(session, list(self.channels))
        sent = 0
        for channel, source in groups:
            now = utcnow()
            with session_scope(url) as session:
                lease = now + timedelta(seconds=LEASE_SECONDS)
                if not operations.lease_group(session, channel, source, self.owner, lease, now - cooldown):
                    continue  # cooling down, backing off, or another dispatcher has it
                drifts = drift_store.pending_drifts(session, channel, source)
                alerts = [] if drifts else operations.pending_alerts(session, channel, source)
                shown = alerts[: max(1, self.settings.alerts.digest_items)]
                kinds = operations.map_kinds_of(session, [a.result_id for a in shown if a.pruned_at is None])
            if drifts:  # a drift goes first, as a message of its own; the flags wait for its cooldown
                ids = [outbox_id for outbox_id, _ in drifts]
                events = [event for _, event in drifts]
                sent += self._deliver(
                    channel,
                    source,
                    ids,
                    partial(drift_message, self.settings, source, events),
                )
            else:
                ids = [alert.outbox_id for alert in alerts]
                sent += self._deliver(
                    channel,
                    source,
                    ids,
                    partial(message, self.settings, source, alerts, kinds),
                )
        return sent

    def _deliver(
        self, channel: str, source: str, ids: list[int], body_of: Callable[[str], dict[str, Any]]
    ) -> int:
        ids = sorted(ids)
        url = self.settings.db_url
        if not ids:  # delivered by another dispatcher between the look and the lease
            with session_scope(url) as session:
                operations.release_group(session, channel, source, self.owner)
            return 0
        delivery = hashlib.sha256(f"{channel}:{source}:{ids}".encode()).hexdigest()[:32]
        body = json.dumps(body_of(delivery)).encode()
        fields = {"channel": channel, "source": source, "flags": len(ids), "delivery": delivery}
        try:
            self.channels[channel].send(source, body)
        except DeliveryError as exc:
            with session_scope(url) as session:
                retry_at = operations.delivery_failed(
                    session, channel, source, self.owner, ids, str(exc), self.backoff
                )
            metrics.alert_delivered(channel, len(ids) > 1, ok=False)
            log.warning(
                "alert delivery failed (%s); retrying at %s UTC", exc, f"{retry_at:%H:%M:%S}", extra=fields
            )
            return 0
        with session_scope(url) as session:
            operations.delivered(session, channel, source, self.owner, ids, delivery)
        metrics.alert_delivered(channel, len(ids) > 1, ok=True)
        self.delivered += 1
        log.info("alert about %d flagged frames of %s sent by %s", len(ids), source, channel, extra=fields)
        return 1

    def run(self, stop: threading.Event) -> None:
        """Deliver every ``alerts.poll_seconds`` until stopped."""
        try:
            while not stop.is_set():
                try:
                    self.dispatch_once()
                except Exception:  # noqa: BLE001 - a service loop: the database may be away for a while
                    log.exception("alert dispatch failed; trying again")
                    stop.wait(max(1.0, self.settings.alerts.poll_seconds))
                stop.wait(self.settings.alerts.poll_seconds)
        finally:
            self.close()

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
