"""Worker status for the overview: inline needs none; Celery workers are pinged over the broker.

Any Celery client on the same broker can ping the workers, so the dashboard does not import
the workers' task modules (nor torch). Answers are cached briefly: a dashboard refreshed by
several operators should not flood the broker, nor wait on a broker that is down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from inspector.config import Settings

CACHE_SECONDS = 15.0


@dataclass(frozen=True)
class WorkerStatus:
    ok: bool
    summary: str
    workers: tuple[str, ...] = ()


_cache: dict[str, tuple[float, WorkerStatus]] = {}


def _ping(broker_url: str, timeout: float) -> WorkerStatus:
    from celery import Celery

    app = Celery("inspector-dashboard", broker=broker_url)
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_timeout = timeout
    app.conf.broker_transport_options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception as exc:  # any broker failure is a status to show, not a crash
        return WorkerStatus(False, f"broker unreachable ({type(exc).__name__}: {exc})")
    finally:
        app.close()
    names = tuple(sorted(name for reply in replies for name in reply))
    if not names:
        return WorkerStatus(False, "no Celery worker answered")
    return WorkerStatus(True, f"{len(names)} Celery worker(s) answered", names)


def worker_status(settings: Settings, timeout: float = 1.0) -> WorkerStatus:
    if settings.executor != "celery":
        return WorkerStatus(True, "inline: frames are scored in the watcher's own process")
    cached = _cache.get(settings.broker_url)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    status = _ping(settings.broker_url, timeout)
    _cache[settings.broker_url] = (time.monotonic(), status)
    return status
