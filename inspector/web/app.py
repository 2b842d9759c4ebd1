"""The review dashboard: the app, its middleware and error pages, and its routes wired in one place.

Each page or resource is a router of its own under web/routes/; what they share is web/pages.py.
The machines' side is there too: the JSON API under /api/v1 with its OpenAPI docs (routes/api.py)
and the probes, /metrics and the favicon (routes/service.py).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from inspector.config import Settings
from inspector.web import security
from inspector.web.pages import HERE, render
from inspector.web.routes import api, calibration, login, models, overview, queue, results, service

ROUTERS = (
    queue.router,
    results.router,
    calibration.router,
    models.router,
    overview.router,
    login.router,
    service.router,  # /healthz, /readyz, /metrics, /favicon.ico
    api.router,  # /api/v1
    api.docs,  # /docs, /openapi.json
)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """An error page, or plain text for pictures and static files."""
    if request.url.path.startswith(("/static/", "/maps/")):
        response = Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")
    else:
        context = {"status": exc.status_code, "detail": exc.detail}
        response = render(request, "error.html", context, exc.status_code)
    response.headers.update(exc.headers or {})  # e.g. Retry-After
    return response


def create_app(settings: Settings) -> FastAPI:
    """The dashboard over the database named in ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=calibration.warm, args=(settings.db_url,), daemon=True).start()
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="inspector",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(security.clean_request), Depends(security.require_reader)],
    )
    app.state.settings = settings
    app.state.throttle = security.LoginThrottle()
    app.add_middleware(
        SessionMiddleware,
        secret_key=security.session_secret(settings),
        session_cookie="inspector_session",
        max_age=security.SESSION_SECONDS,
        same_site="strict",
    )
    app.middleware("http")(_security_headers)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app
