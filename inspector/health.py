"""Is the pipeline well: heartbeats of its processes, its backlogs, its schema.

Watchers, workers and alert dispatchers write a heartbeat row every ``health.heartbeat_seconds``
and say when they stop. A process whose beat is older than ``health.down_after_seconds`` and
that never said it stopped is *down* (killed, hung, its host gone). One summary serves
`inspector status`, the API's status, /readyz and the metrics' SQL gauges.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from inspector.config import Settings
from inspector.store import drift as drift_store
from inspector.store import migrate, operations, queries
from inspector.store import review as store_review
from inspector.store.db import session_scope
from inspector.store.models import DRIFT_WATCHED, utcnow
from inspector.store.models import Heartbeat as HeartbeatRow
from inspector.store.registry import default_models

log = logging.getLogger(__name__)

FORGET_AFTER = timedelta(days=1)  # rows of processes silent this long are dropped


@dataclass
class ProcessView:
    kind: str
    name: str
    host: str
    pid: int
    state: str  # up | down | stopped
    beat_age: float  # seconds since its last beat
    started_at: datetime
    doing: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} on {self.host} (pid {self.pid})"


@dataclass
class Backlog:
    by_status: dict[str, int]
    oldest_seconds: float | None  # the oldest frame not yet scored, since its registration

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass
class AlertBacklog:
    by_channel: dict[str, int]
    oldest_seconds: float | None
    failing: int  # undelivered alerts that failed at least once

    @property
    def total(self) -> int:
        return sum(self.by_channel.values())


@dataclass
class ModelView:
    version: str
    method: str


@dataclass
class DriftView:
    """A source's latest drift check of one quantity (pipeline/drift.py)."""

    source: str
    watched: str  # "score" or "level" (store.models.DRIFT_WATCHED)
    model_version: str
    method: str
    drifting: bool
    statistic: float | None  # the KS distance (None: not tested)
    p_value: float | None
    frames: int
    since: datetime | None
    checked_at: datetime
    note: str


@dataclass
class HealthReport:
    checked_at: datetime
    schema: str | None  # the database's revision
    schema_expected: str | None
    processes: list[ProcessView]
    backlog: Backlog
    alerts: AlertBacklog
    to_review: int
    model: ModelView | None
    drift: list[DriftView] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@cache
def _head() -> str | None:
    return migrate.head_revision()


def _age(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())


def _state(row: HeartbeatRow, now: datetime, settings: Settings) -> str:
    if row.stopped_at is not None:
        return "stopped"
    return "down" if (_age(row.beat_at, now) or 0.0) > settings.health.down_after_seconds else "up"


def summary(settings: Settings) -> HealthReport:
    """The pipeline's state now, with what is wrong in ``problems`` (empty: healthy)."""
    now = utcnow()
    schema = migrate.current_revision(settings.db_url)
    with session_scope(settings.db_url) as session:
        processes = []
        beaten = queries.database_time(session)  # the clock heartbeats are stamped by, whatever this host's
        for row in operations.heartbeats(session):
            state, age = _state(row, beaten, settings), _age(row.beat_at, beaten) or 0.0
            processes.append(
                ProcessView(row.kind, row.name, row.host, row.pid, state, age, row.started_at, row.doing)
            )
        counts, oldest = operations.unscored(session)
        channels, oldest_alert, failing = operations.undelivered(session)
        to_review = store_review.queue_count(session, store_review.QueueFilter())
        models = default_models(session)  # oldest first: the last is the one registered last
        drift = [
            DriftView(
                s.source,
                s.watched,
                s.model_version,
                s.method,
                s.drifting,
                s.statistic,
                s.p_value,
                s.frames,
                s.since,
                s.checked_at,
                s.note,
            )
            for s in drift_store.states(session)
        ]
    report = HealthReport(
        checked_at=now,
        schema=schema,
        schema_expected=_head(),
        processes=processes,
        backlog=Backlog(counts, _age(oldest, now)),
        alerts=AlertBacklog(channels, _age(oldest_alert, now), failing),
        to_review=to_review,
        model=ModelView(models[-1].version, models[-1].method) if models else None,
        drift=drift,
    )
    report.problems = _problems(report, settings)
    return report


def _problems(report: HealthReport, settings: Settings) -> list[str]:
    health, problems = settings.health, []
    if report.schema != report.schema_expected:
        problems.append(
            f"database schema is at {report.schema or 'nothing'}, not {report.schema_expected}: "
            "run `inspector db upgrade`"
        )
    for process in report.processes:
        if process.state == "down":
            problems.append(f"{process.label} is down: last beat {ago(process.beat_age)} ago")
    if health.require_watcher and not any(p.kind == "watcher" and p.state == "up" for p in report.processes):
        problems.append("no watcher is running (health.require_watcher)")
    limit = health.max_backlog_seconds
    backlog, alerts = report.backlog, report.alerts
    if (backlog.oldest_seconds or 0) > limit:
        problems.append(
            f"{backlog.total} frames wait to be scored, the oldest for {ago(backlog.oldest_seconds)} "
            f"(limit {ago(limit)})"
        )
    if (alerts.oldest_seconds or 0) > limit:
        problems.append(
            f"{alerts.total} alerts are undelivered, the oldest for {ago(alerts.oldest_seconds)} "
            f"({alerts.failing} failed at least once)"
        )
    for drift in report.drift:
        if drift.drifting:
            values, reference = DRIFT_WATCHED[drift.watched]
            problems.append(
                f"{drift.source} drifts: its latest {drift.frames} {values} differ from those of "
                f"{drift.model_version}'s {reference} (KS D {drift.statistic:.2f}) "
                f"since {drift.since:%Y-%m-%d %H:%M} UTC"
            )
    return problems


def readiness(settings: Settings) -> tuple[bool, dict[str, str]]:
    """Whether this dashboard can serve: the database answers, its schema is the code's, and
    (with health.require_watcher) a watcher beats. Each check with what it found."""
    checks: dict[str, str] = {}
    try:
        current = migrate.current_revision(settings.db_url)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database is "not ready"
        return False, {"database": f"unreachable: {type(exc).__name__}"}
    checks["database"] = "ok"
    expected = _head()
    ready = current == expected
    checks["schema"] = "ok" if ready else f"at {current or 'nothing'}, expected {expected}"
    if settings.health.require_watcher:
        with session_scope(settings.db_url) as session:
            now = queries.database_time(session)
            live = [
                row
                for row in operations.heartbeats(session)
                if row.kind == "watcher" and _state(row, now, settings) == "up"
            ]
        checks["watcher"] = f"{len(live)} live"
        ready = ready and bool(live)
    return ready, checks


class Heartbeat:
    """A thread that records every ``health.heartbeat_seconds`` that this process lives and what it
    is doing (``doing()``), and that it stopped when it ends."""

    def __init__(self, settings: Settings, kind: str, name: str, doing: Callable[[], str] = lambda: ""):
        self.settings, self.kind, self.name, self.doing = settings, kind, name, doing
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{kind}", daemon=True)

    def _beat(self, start: bool = False) -> None:
        with session_scope(self.settings.db_url) as session:
            operations.beat(
                session,
                kind=self.kind,
                name=self.name,
                host=self.host,
                pid=self.pid,
                doing=self.doing()[:1000],
                start=start,
            )
            if start:
                operations.forget_heartbeats(session, queries.database_time(session) - FORGET_AFTER)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.health.heartbeat_seconds):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - the database may be away for a while: beat again later
                log.warning("heartbeat failed; trying again", exc_info=True)

    def start(self) -> None:
        self._beat(start=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            with session_scope(self.settings.db_url) as session:
                operations.stopped(
                    session, kind=self.kind, host=self.host, pid=self.pid, doing=self.doing()[:1000]
                )
        except Exception:  # noqa: BLE001 - stopping anyway; the row turns "down" and says so
            log.warning("could not record the stop", exc_info=True)


@contextmanager
def beating(
    settings: Settings, kind: str, name: str, doing: Callable[[], str] = lambda: ""
) -> Iterator[None]:
    heartbeat = Heartbeat(settings, kind, name, doing)
    heartbeat.start()
    try:
        yield
    finally:
        heartbeat.stop()
