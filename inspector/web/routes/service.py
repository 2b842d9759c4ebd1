"""The endpoints machines call: liveness and readiness probes, Prometheus metrics, the favicon.

/healthz is liveness (the process answers, nothing else: a database outage must not get the
dashboard restarted in a loop); /readyz is readiness (the database answers at the code's
schema, and a watcher beats when health.require_watcher is set), for docker-compose
healthchecks and Kubernetes probes; both answer without a login on any address. /metrics needs
a token exactly when API reads do.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from inspector import health, metrics
from inspector.web.security import require_token_reader

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ready, checks = health.readiness(request.app.state.settings)
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})


@router.get("/metrics", dependencies=[Depends(require_token_reader)])
def prometheus(request: Request) -> Response:
    """Every process group's counters under the metrics folder, and the SQL gauges."""
    state = request.app.state
    if not hasattr(state, "metrics_registry"):
        state.metrics_registry = metrics.registry(state.settings, every_group=True, pipeline=True)
    return Response(metrics.exposition(state.metrics_registry), media_type=metrics.CONTENT_TYPE)


@router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg", status_code=301)
