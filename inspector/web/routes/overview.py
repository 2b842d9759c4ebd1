"""The overview: throughput, backlogs, workers (the probes: routes/service.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from inspector.config import Settings
from inspector.pipeline.distributed import WorkerStatus, ping_workers
from inspector.store import review
from inspector.web import charts
from inspector.web.pages import DB, render, settings_of

router = APIRouter()
# Worker answers are cached briefly: a dashboard refreshed by several operators should not
# flood the broker, nor wait on a broker that is down.
CACHE_SECONDS = 15.0
_cache: dict[str, tuple[float, WorkerStatus]] = {}


def worker_status(settings: Settings, timeout: float = 1.0) -> WorkerStatus:
    if settings.executor != "celery":
        return WorkerStatus(True, "inline: frames are scored in the watcher's own process")
    cached = _cache.get(settings.broker_url)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    status = ping_workers(settings.broker_url, timeout)
    _cache[settings.broker_url] = (time.monotonic(), status)
    return status


@router.get("/overview")
def overview(request: Request, session: DB) -> HTMLResponse:
    now = datetime.now(UTC).replace(tzinfo=None)
    hours = [now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=h) for h in range(23, -1, -1)]
    stats = review.overview(session, hours[0], hours)
    settings = settings_of(request)
    context = {
        "stats": stats,
        "chart": charts.hourly_bars(stats.frames_per_hour),
        "executor": settings.executor,
        "workers": worker_status(settings),
    }
    return render(request, "overview.html", context)
