"""The review dashboard: server-rendered pages over the pipeline's database.

Handlers parse the request, call inspector.store.review (all SQL lives there) and render a
template. The dashboard draws the maps the pipeline stored; it never runs the model.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from inspector.config import Settings
from inspector.maps import HEAT_KINDS, MAP_KINDS, decode_png, encode_png, picture
from inspector.pipeline import thresholds
from inspector.store import review as store
from inspector.store.db import session_scope
from inspector.store.models import LABELS, Result
from inspector.web import calibration, charts, security
from inspector.web.workers import worker_status

T = TypeVar("T")
HERE = Path(__file__).parent
FILTER_KEYS = ("start", "end", "source", "score_min", "score_max", "model_version", "all")
PAGE_SIZE = 50
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["when"] = lambda t: "" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"
templates.env.filters["num"] = lambda x: "–" if x is None else f"{x:.4g}"
templates.env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}%"


def db(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.settings.db_url) as session:
        yield session


DB = Annotated[Session, Depends(db)]
Writer = Annotated[str, Depends(security.require_writer)]


def render(request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
    """A page with the login state, CSRF token and any one-off message the base template shows."""
    context = {
        "user": security.current_user(request),
        "csrf": security.page_csrf(request),
        "writes_enabled": bool(request.app.state.settings.server.token),
        "flash": request.session.pop("flash", None),
        **context,
    }
    return templates.TemplateResponse(request, name, context, status_code=status)


def see_other(url: str, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
    if flash and request is not None:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)


def _param(params: Mapping[str, str], key: str, parse: Callable[[str], T]) -> T | None:
    raw = (params.get(key) or "").strip()
    if not raw:
        return None
    try:
        value = parse(raw)
    except ValueError as exc:
        raise HTTPException(400, f"Bad value for {key}: {raw!r}") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise HTTPException(400, f"Bad value for {key}: {raw!r}")
    return value


def parse_filter(params: Mapping[str, str]) -> store.QueueFilter:
    """The queue filter from query (or form) fields; times are UTC."""
    return store.QueueFilter(
        start=_param(params, "start", datetime.fromisoformat),
        end=_param(params, "end", datetime.fromisoformat),
        source=_param(params, "source", str),
        score_min=_param(params, "score_min", float),
        score_max=_param(params, "score_max", float),
        model_version=_param(params, "model_version", str),
        flagged_only=params.get("all") != "1",
    )


def filter_query(params: Mapping[str, str]) -> str:
    """The filter part of a query string, to carry through frame views and reviews."""
    return urlencode([(k, params[k]) for k in FILTER_KEYS if params.get(k)])


def parse_key(raw: str | None) -> store.Key | None:
    if not raw:
        return None
    score, _, ident = raw.rpartition(":")
    try:
        return float(score), int(ident)
    except ValueError as exc:
        raise HTTPException(400, f"Bad page cursor: {raw!r}") from exc


def key_of(result: Result) -> str:
    return f"{result.score!r}:{result.id}"


def create_app(settings: Settings) -> FastAPI:
    """The dashboard over the database named in ``settings``."""
    app = FastAPI(
        title="inspector",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(security.require_reader)],
    )
    app.state.settings = settings
    app.add_middleware(
        SessionMiddleware,
        secret_key=security.session_secret(settings),
        session_cookie="inspector_session",
        max_age=12 * 3600,
        same_site="strict",
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    throttle = security.LoginThrottle()

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(("/static/", "/maps/")):
            response = Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")
        else:
            context = {"status": exc.status_code, "detail": exc.detail}
            response = render(request, "error.html", context, exc.status_code)
        response.headers.update(exc.headers or {})  # e.g. Retry-After
        return response

    @app.get("/healthz")
    def healthz(session: DB) -> dict[str, str]:
        session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/queue")

    def queue_context(request: Request, session: Session) -> dict:
        params = request.query_params
        filters = parse_filter(params)
        page = store.queue_page(
            session, filters, parse_key(params.get("after")), parse_key(params.get("before")), PAGE_SIZE
        )
        return {
            "page": page,
            "count": store.queue_count(session, filters),
            "filters": filters,
            "params": params,
            "q": filter_query(params),
            "key_of": key_of,
        }

    @app.get("/queue")
    def queue(request: Request, session: DB) -> HTMLResponse:
        context = queue_context(request, session)
        context |= {"sources": store.sources(session), "versions": store.model_versions(session)}
        return render(request, "queue.html", context)

    @app.get("/queue/rows")
    def queue_rows(request: Request, session: DB) -> HTMLResponse:
        """The queue table's body alone: the page polls it to show new frames without reloading."""
        context = queue_context(request, session)
        headers = {"X-Queue-Count": str(context["count"]), "Cache-Control": "no-store"}
        return templates.TemplateResponse(request, "_queue_rows.html", context, headers=headers)

    @app.get("/results/{result_id}")
    def frame_view(request: Request, result_id: int, session: DB) -> HTMLResponse:
        result = store.get_result(session, result_id)
        if result is None:
            raise HTTPException(404, f"No result {result_id}.")
        filters = parse_filter(request.query_params)
        key = (result.score, result.id)
        context = {
            "result": result,
            "frame": result.frame,
            "maps": store.map_kinds(session, result.id),
            "threshold_now": store.effective_threshold(session, result.frame.source, result.model_version),
            "next_id": store.neighbour(session, filters, key, forward=True),
            "prev_id": store.neighbour(session, filters, key, forward=False),
            "q": filter_query(request.query_params),
            "labels": LABELS,
        }
        return render(request, "frame.html", context)

    @app.post("/results/{result_id}/review")
    def review(
        request: Request,
        result_id: int,
        user: Writer,
        session: DB,
        label: Annotated[str, Form()],
        q: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        if label not in LABELS:
            raise HTTPException(400, f"Label must be one of {', '.join(LABELS)}.")
        result = session.get(Result, result_id)
        if result is None:
            raise HTTPException(404, f"No result {result_id}.")
        store.add_review(session, result.frame_id, label, user, note.strip()[:1000])
        session.commit()
        filters = parse_filter(dict(parse_qsl(q)))
        next_id = store.neighbour(session, filters, (result.score, result.id), forward=True)
        done = f"Frame {result.frame_id} labelled {label}."
        suffix = f"?{q}" if q else ""
        if next_id is None:
            return see_other(f"/queue{suffix}", done + " That was the last one in the queue.", request)
        return see_other(f"/results/{next_id}{suffix}", done, request)

    @app.get("/maps/{result_id}/{kind}.png")
    def map_picture(result_id: int, kind: str, session: DB) -> Response:
        """A map drawn from the result's stored planes (a heat map is laid over the input)."""
        needed = {kind, "input"} if kind in HEAT_KINDS else {kind}
        planes = store.result_maps(session, result_id, needed) if kind in MAP_KINDS else {}
        if set(planes) != needed:
            raise HTTPException(404, "No such map.")
        image = picture(kind, {name: decode_png(png) for name, png in planes.items()})
        return Response(
            encode_png(image), media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
        )

    @app.get("/calibration")
    def calibration_view(request: Request, session: DB) -> HTMLResponse:
        params = request.query_params
        versions = store.model_versions(session)
        version = _param(params, "model_version", str) or (versions[0] if versions else None)
        source = _param(params, "source", str)
        target = _param(params, "target", float) or 0.99
        if not 0 < target <= 1:
            raise HTTPException(400, "Target recall must be in (0, 1].")
        context: dict = {
            "versions": versions,
            "sources": store.sources(session),
            "version": version,
            "source": source,
            "target": target,
            "changes": store.threshold_changes(session),
        }
        if version:
            context |= _calibrate(session, version, source, target)
        return render(request, "calibration.html", context)

    @app.post("/calibration/apply")
    def apply_threshold(
        request: Request,
        user: Writer,
        session: DB,
        source: Annotated[str, Form()],
        model_version: Annotated[str, Form()],
        value: Annotated[float, Form()],
        target: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        if source not in store.sources(session):
            raise HTTPException(400, f"Unknown source {source!r}.")
        old = store.effective_threshold(session, source, model_version)
        try:
            _, changed = thresholds.set_threshold(
                session, source, model_version, value, user, reason.strip()[:500] or None
            )
        except thresholds.ThresholdError as exc:
            raise HTTPException(400, str(exc)) from exc
        session.commit()
        back = urlencode({"model_version": model_version, "source": source, "target": target})
        message = (
            f"Threshold for {source} ({model_version}): {old:.4g} → {value:.4g}; {changed} verdicts changed."
        )
        return see_other(f"/calibration?{back}", message, request)

    @app.get("/overview")
    def overview(request: Request, session: DB) -> HTMLResponse:
        now = datetime.now(UTC).replace(tzinfo=None)
        hours = [
            now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=h) for h in range(23, -1, -1)
        ]
        stats = store.overview(session, hours[0], hours)
        context = {
            "stats": stats,
            "chart": charts.hourly_bars(stats.frames_per_hour),
            "executor": settings.executor,
            "workers": worker_status(settings),
        }
        return render(request, "overview.html", context)

    @app.get("/login")
    def login_form(request: Request, next: str = "/queue") -> HTMLResponse:
        security.csrf_token(request)  # the session (and its cookie) starts here, for the form
        return render(request, "login.html", {"next": _local(next)})

    @app.post("/login", dependencies=[Depends(security.check_csrf)])
    def login(
        request: Request,
        token: Annotated[str, Form()] = "",
        name: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/queue",
    ) -> RedirectResponse:
        security.login(request, settings.server, token, name, throttle)
        return see_other(_local(next))

    @app.post("/logout", dependencies=[Depends(security.check_csrf)])
    def logout(request: Request) -> RedirectResponse:
        request.session.clear()
        return see_other("/queue")

    return app


def _local(url: str) -> str:
    """Only same-site paths as redirect targets (no open redirect via ``next``)."""
    return url if url.startswith("/") and not url.startswith(("//", "/\\")) else "/queue"


def _calibrate(session: Session, version: str, source: str | None, target: float) -> dict:
    """Labelled scores turned into the calibration page's numbers and charts."""
    samples = store.labelled_scores(session, version, source)
    anomalies = sum(1 for _, label in samples if label == "anomaly")
    current = (
        store.effective_threshold(session, source, version)
        if source
        else store.default_threshold(session, version)
    )
    context: dict = {
        "samples": len(samples),
        "anomalies": anomalies,
        "normals": len(samples) - anomalies,
        "current": current,
    }
    if not anomalies or anomalies == len(samples):
        return context
    suggested = calibration.threshold_for_recall(samples, target)
    points = calibration.curve(samples)
    marks = {
        "current": calibration.operating(samples, current),
        "suggested": calibration.operating(samples, suggested),
    }
    return context | {
        "suggested": suggested,
        "marks": marks,
        "auc": calibration.roc_auc(points),
        "histogram": charts.histogram(samples, {k: m.threshold for k, m in marks.items()}),
        "roc": charts.curve(points, "roc", marks),
        "pr": charts.curve(points, "pr", marks),
    }
