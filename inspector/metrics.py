"""Prometheus metrics: what the pipeline did (counted where it happens) and where it stands (read
from SQL when scraped).

Counters and histograms are counted in the process that does the work: the watcher, its
scorer processes (spawned), Celery workers and their pool children (forked). prometheus_client's
multiprocess mode keeps each process's values in a file: a long-running command calls
:func:`start` first, which gives its process group a folder of its own under ``metrics.dir``
(``<data_dir>/metrics`` by default) and points ``PROMETHEUS_MULTIPROC_DIR`` there, so its
children write beside it. Every sample carries a ``process`` label naming that group, so when
a dead group's folder is removed its series end, and no sum across processes ever goes down.

Served by the dashboard's ``/metrics`` (every group under the folder, plus the SQL gauges) and,
with ``--metrics-port``, by each watcher or worker itself (its own group only).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from inspector import health
from inspector.config import Settings
from inspector.store.models import utcnow

log = logging.getLogger(__name__)

GROUP_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own: where this process writes its values
ALIVE = "alive"  # touched by a group's leader while it lives
TOUCH_SECONDS = 30.0
FORGET_EVERY = 60.0  # seconds between looks for dead groups while serving scrapes
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_root(settings: Settings) -> Path:
    return Path(settings.metrics.dir).expanduser() if settings.metrics.dir else settings.data_path / "metrics"


def _host() -> str:
    return socket.gethostname().replace("/", "-")


def process_label() -> str:
    """The process group this process counts for: its folder's name, or this process alone."""
    folder = os.environ.get(GROUP_ENV)
    return Path(folder).name if folder else f"local-{_host()}-{os.getpid()}"


# --- the metrics --------------------------------------------------------------------------


@dataclass
class _Metrics:
    registered: Counter
    scored: Counter
    flagged: Counter
    quarantined: Counter
    deferred: Counter
    latency: Histogram
    score: Histogram
    alerts_sent: Counter
    alerts_failed: Counter
    pruned: Counter


_METRICS: _Metrics | None = None
_LOCAL = CollectorRegistry()  # this process's values when it runs without a group (tests, one-off commands)
_LOCK = threading.Lock()


def _reset_metrics(buckets: Sequence[float] | None = None) -> None:
    """Drop the metric objects (their values kept elsewhere from now on) and make them anew."""
    global _METRICS, _LOCAL
    with _LOCK:
        _METRICS, _LOCAL = None, CollectorRegistry()
    _metrics(buckets)


def _metrics(buckets: Sequence[float] | None = None) -> _Metrics:
    """The metric objects, made on first use: after :func:`start` chose how values are kept."""
    global _METRICS
    with _LOCK:
        if _METRICS is None:
            by_source = ["source", "process"]

            def counter(name: str, doc: str, labels: list[str] = by_source) -> Counter:
                return Counter(name, doc, labels, registry=_LOCAL)

            _METRICS = _Metrics(
                registered=counter("inspector_frames_registered", "Frames registered by a watcher."),
                scored=counter("inspector_frames_scored", "Frames whose result was committed."),
                flagged=counter("inspector_frames_flagged", "Frames whose committed result is a flag."),
                quarantined=counter("inspector_frames_quarantined", "Frames quarantined (unreadable, lost)."),
                deferred=counter(
                    "inspector_frames_deferred",
                    "Registered frames unregistered again while their file was still being written "
                    "(registered anew once it is complete: registered minus deferred is frames landed).",
                ),
                latency=Histogram(
                    "inspector_frame_latency_seconds",
                    "From a frame landing (its file's mtime) to its result's commit.",
                    by_source,
                    buckets=LATENCY_BUCKETS,
                    registry=_LOCAL,
                ),
                score=Histogram(
                    "inspector_frame_score",
                    "Scores of committed results (the model's units).",
                    by_source,
                    buckets=tuple(buckets or Settings().metrics.score_buckets),
                    registry=_LOCAL,
                ),
                alerts_sent=counter(
                    "inspector_alert_messages", "Alert messages delivered.", ["channel", "kind", "process"]
                ),
                alerts_failed=counter(
                    "inspector_alert_failures",
                    "Alert deliveries that failed (retried later).",
                    ["channel", "process"],
                ),
                pruned=counter(
                    "inspector_pruned_frames", "Frames whose file and maps were pruned.", ["process"]
                ),
            )
        return _METRICS


def frames_registered(source: str, count: int) -> None:
    if count:
        _metrics().registered.labels(source, process_label()).inc(count)


def _count_frames(counter: Counter, sources: Iterable[str]) -> None:
    process = process_label()
    for source in sources:
        counter.labels(source, process).inc()


def frames_quarantined(sources: Iterable[str]) -> None:
    _count_frames(_metrics().quarantined, sources)


def frames_deferred(sources: Iterable[str]) -> None:
    _count_frames(_metrics().deferred, sources)


def results_committed(frames: Sequence[Any], rows: Sequence[dict[str, Any]], closed: set[int]) -> None:
    """Count the results of a committed batch (``rows`` as given to insert_results) whose frames
    this call closed (``closed``): a frame scored twice after a lost worker counts once."""
    now, metrics, process = utcnow(), _metrics(), process_label()
    by_source: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for frame, row in zip(frames, rows, strict=True):
        if frame.id in closed:
            by_source.setdefault(frame.source, []).append((frame, row))
    for source, done in by_source.items():  # each labelled child looked up once a batch, not a frame
        latency, score = metrics.latency.labels(source, process), metrics.score.labels(source, process)
        metrics.scored.labels(source, process).inc(len(done))
        if flagged := sum(1 for _, row in done if row["is_anomaly"]):
            metrics.flagged.labels(source, process).inc(flagged)
        for frame, row in done:
            latency.observe(max(0.0, (now - frame.landed_at).total_seconds()))
            score.observe(row["score"])


def alert_delivered(channel: str, digest: bool, ok: bool) -> None:
    if ok:
        _metrics().alerts_sent.labels(channel, "digest" if digest else "single", process_label()).inc()
    else:
        _metrics().alerts_failed.labels(channel, process_label()).inc()


def frames_pruned(count: int) -> None:
    if count:
        _metrics().pruned.labels(process_label()).inc(count)


# --- process groups -------------------------------------------------------------------------


def start(settings: Settings, kind: str) -> Path | None:
    """Make this process the leader of a process group that counts into files: call it before
    any metric is touched and before child processes start (they inherit the folder), and
    :func:`stop` at the end (which matters only to a process that goes on, such as a test's).

    A folder of the same name (this host and pid: a restarted container) is emptied, and the
    folders of long-dead groups are removed (see :func:`forget_dead_groups`).
    """
    global _GROUP
    if not settings.metrics.enabled:
        return None
    root = metrics_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    forget_dead_groups(root, settings.metrics.stale_seconds)
    folder = root / f"{kind}-{_host()}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / ALIVE).touch()
    _GROUP = _Group(folder, os.environ.get(GROUP_ENV), values.ValueClass, threading.Event())
    os.environ[GROUP_ENV] = str(folder)
    values.ValueClass = values.MultiProcessValue()
    _reset_metrics(settings.metrics.score_buckets)
    threading.Thread(target=_GROUP.keep_alive, name="metrics-alive", daemon=True).start()
    return folder


def stop() -> None:
    """Leave the group: this process counts in its own memory again (the folder stays for scrapes)."""
    global _GROUP
    group, _GROUP = _GROUP, None
    if group is None:
        return
    group.stopped.set()
    values.close_all_multiprocess_files()
    values.ValueClass = group.value_class
    if group.previous_env is None:
        os.environ.pop(GROUP_ENV, None)
    else:
        os.environ[GROUP_ENV] = group.previous_env
    _reset_metrics()


@dataclass
class _Group:
    folder: Path
    previous_env: str | None
    value_class: Any
    stopped: threading.Event

    def keep_alive(self) -> None:
        while not self.stopped.wait(TOUCH_SECONDS):
            (self.folder / ALIVE).touch()


_GROUP: _Group | None = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_groups(root: Path, stale_seconds: float) -> list[str]:
    """Remove the folders of groups whose leader is gone: it has not touched its folder for
    ``stale_seconds`` and, on this host, its pid no longer runs (on another host, a container
    sharing the volume, the silence alone decides). Until then its series stay, so a
    `watch --once` from cron is still scraped after it exits. Returns the names removed."""
    removed, host, now = [], _host(), time.time()
    for group in root.glob("*-*-*"):
        _, rest = group.name.split("-", 1)
        group_host, _, pid = rest.rpartition("-")
        try:
            silent = now - (group / ALIVE).stat().st_mtime > stale_seconds
            dead = silent and (group_host != host or not _pid_alive(int(pid)))
        except (OSError, ValueError):
            dead = False
        if dead and group.name != process_label():
            shutil.rmtree(group, ignore_errors=True)
            removed.append(group.name)
    return removed


class GroupsCollector(Collector):
    """The counted metrics of every process group under a folder (or of one group)."""

    def __init__(self, folders: str, stale_seconds: float | None = None):
        self.pattern = folders  # a glob of group folders
        self.stale_seconds = stale_seconds
        self._forgotten_at = 0.0

    def collect(self) -> Iterator[Metric]:
        if self.stale_seconds is not None and time.monotonic() - self._forgotten_at > FORGET_EVERY:
            self._forgotten_at = time.monotonic()
            forget_dead_groups(Path(self.pattern).parent, self.stale_seconds)
        files = glob.glob(os.path.join(self.pattern, "*.db"))
        yield from MultiProcessCollector.merge(files, accumulate=True)


def _waiting(
    name: str, oldest: str, what: str, label: str, backlog: health.Backlog | health.AlertBacklog
) -> Iterator[GaugeMetricFamily]:
    """How many wait (by ``label``), and the age of the oldest (0 when none)."""
    counts = backlog.by_status if isinstance(backlog, health.Backlog) else backlog.by_channel
    gauge = GaugeMetricFamily(
        f"inspector_{name}", f"Each {what} not yet handled, by {label}.", labels=[label]
    )
    for value, count in counts.items():
        gauge.add_metric([value], count)
    yield gauge
    age = backlog.oldest_seconds or 0.0
    yield GaugeMetricFamily(f"inspector_{oldest}", f"Age of the oldest {what} waiting (0: none).", value=age)


class PipelineCollector(Collector):
    """Where the pipeline stands, read from SQL at scrape time (inspector.health's summary)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        report = health.summary(self.settings)
        backlog, alerts = report.backlog, report.alerts
        yield from _waiting("queue_frames", "queue_oldest_seconds", "frame", "status", backlog)
        yield GaugeMetricFamily(
            "inspector_review_queue_frames", "Flagged frames without a review.", value=report.to_review
        )
        yield from _waiting(
            "alerts_undelivered", "alerts_oldest_undelivered_seconds", "flag", "channel", alerts
        )
        model = GaugeMetricFamily(
            "inspector_model_info", "The model registered last (1).", labels=["version", "method"]
        )
        if report.model is not None:
            model.add_metric([report.model.version, report.model.method], 1)
        yield model
        drifting = GaugeMetricFamily(
            "inspector_drift",
            "1 while a source drifts: its latest scores from its model's held-out ones, or its frames'"
            " levels from its model's training frames'.",
            labels=["source"],
        )
        distance = GaugeMetricFamily(
            "inspector_drift_statistic",
            "The drift test's KS distance of a source's latest scores or frame levels (0 to 1).",
            labels=["source", "watched", "version", "method"],
        )
        sources: dict[str, bool] = {}
        for drift in report.drift:
            sources[drift.source] = sources.get(drift.source, False) or drift.drifting
            if drift.statistic is not None:
                labels = [drift.source, drift.watched, drift.model_version, drift.method]
                distance.add_metric(labels, drift.statistic)
        for source, drifts in sources.items():
            drifting.add_metric([source], 1 if drifts else 0)
        yield drifting
        yield distance
        labels = ["kind", "name", "host", "pid"]
        up = GaugeMetricFamily(
            "inspector_process_up", "1 while a process beats, 0 once it missed.", labels=labels
        )
        age = GaugeMetricFamily(
            "inspector_process_heartbeat_age_seconds", "Since its last beat.", labels=labels
        )
        for process in report.processes:
            if process.state == "stopped":
                continue
            key = [process.kind, process.name, process.host, str(process.pid)]
            up.add_metric(key, 1 if process.state == "up" else 0)
            age.add_metric(key, process.beat_age)
        yield up
        yield age


def registry(settings: Settings, every_group: bool, pipeline: bool) -> CollectorRegistry:
    """What a scrape returns: the counted metrics of every process group under the metrics folder
    (``every_group``: the dashboard's /metrics) or of this process's own group (a watcher's or
    worker's ``--metrics-port``), and with ``pipeline`` the SQL gauges."""
    collectors = CollectorRegistry(auto_describe=False)
    group = os.environ.get(GROUP_ENV)
    if every_group and settings.metrics.enabled:
        root = metrics_root(settings)
        collectors.register(GroupsCollector(str(root / "*-*-*"), settings.metrics.stale_seconds))
    elif group:
        collectors.register(GroupsCollector(group))
    if not group:  # values held in this process's memory (no group): served from there
        collectors.register(_LocalCollector())
    if pipeline:
        collectors.register(PipelineCollector(settings))
    return collectors


class _LocalCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from _LOCAL.collect()


def exposition(collectors: CollectorRegistry) -> bytes:
    """The Prometheus text format of a scrape."""
    return generate_latest(collectors)


def serve(settings: Settings, port: int, pipeline: bool) -> None:
    """Serve this process group's metrics (with ``pipeline``, the SQL gauges too) on a port of its
    own, from a daemon thread: ``--metrics-port`` of watch and worker."""
    start_http_server(port, addr=settings.metrics.host, registry=registry(settings, False, pipeline))
    log.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
