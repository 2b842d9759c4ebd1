"""What runs beside a long-running command (watch, worker, alerts dispatch), each in a thread of
its own: the process group's metrics (and ``--metrics-port``), the heartbeat, and for a watcher
the alert dispatcher, the retention policy and the drift monitor. None of them ever holds up scoring.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from inspector import health, metrics
from inspector.config import Settings
from inspector.pipeline import alerts, drift, retention

log = logging.getLogger(__name__)


def _every(seconds: float, step: Callable[[], object], stop: threading.Event, what: str) -> None:
    while not stop.wait(seconds):
        try:
            step()
        except Exception:  # noqa: BLE001 - a service loop: log and try at the next turn
            log.exception("%s failed; trying again in %g s", what, seconds)


def _prune(settings: Settings) -> None:
    chosen, done = retention.prune(settings)
    if done.frames or done.duplicates:
        log.info(
            "retention: pruned %d frames (%d by age, %d by size)", done.frames, chosen.by_age, chosen.by_size
        )


@contextmanager
def alongside(
    settings: Settings,
    kind: str,
    name: str,
    doing: Callable[[], str] = lambda: "",
    metrics_port: int | None = None,
    pipeline_metrics: bool = False,
    dispatcher: alerts.Dispatcher | None = None,
    prune: bool = False,
    drift_checks: bool = False,
) -> Iterator[None]:
    """Start the companions of a ``kind`` process for the block, and stop them after it.

    Call it before the process starts children (scorers, Celery's pool): they count their
    metrics into the group this makes.
    """
    metrics.start(settings, kind)
    if metrics_port:
        metrics.serve(settings, metrics_port, pipeline_metrics)
    stop = threading.Event()
    threads = []
    if dispatcher is not None and dispatcher.channels:
        threads.append(threading.Thread(target=dispatcher.run, args=(stop,), name="alerts", daemon=True))
    every = settings.retention.every_minutes * 60
    if prune and every > 0:
        threads.append(
            threading.Thread(
                target=_every, args=(every, lambda: _prune(settings), stop, "retention"), name="retention"
            )
        )
    if drift_checks and settings.drift.enabled:
        check = settings.drift.every_seconds
        threads.append(
            threading.Thread(
                target=_every, args=(check, lambda: drift.check(settings), stop, "drift check"), name="drift"
            )
        )
    try:
        with health.beating(settings, kind, name, doing):
            for thread in threads:
                thread.start()
            try:
                yield
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
    finally:
        metrics.stop()
