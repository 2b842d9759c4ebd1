"""The JSON API under /api/v1: results, reviews, thresholds and status, for scripts and MES systems.

Authentication is a token in a header, ``Authorization: Bearer <token>`` (no cookies, so no
CSRF): writes need the writer token (``server.token``, the one reviewers log in with); reads
need one when the server listens beyond loopback (as its pages need a login) or when
``api.read_token`` is set (then that token or the writer's). Wrong tokens count against the
client as wrong logins do. A score is on its model's (version, method) scale: results and
thresholds name both. Documented by OpenAPI: /openapi.json, and /docs (Swagger UI served from
this server, nothing fetched from elsewhere).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, field_validator

from inspector import health
from inspector.pipeline import thresholds
from inspector.store import operations
from inspector.store import review as store
from inspector.store.models import Review
from inspector.web import security
from inspector.web.pages import DB, ResultId, in_id_range

VERSION = "v1"
MAX_PAGE = 500


class JsonErrorRoute(APIRoute):
    """Errors of API routes as JSON ({"detail": ...}), whatever the dashboard does with its own."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

        return handle


router = APIRouter(prefix=f"/api/{VERSION}", route_class=JsonErrorRoute, tags=["api"])
docs = APIRouter(include_in_schema=False)
Read = [Depends(security.require_token_reader)]
Write = [Depends(security.require_token_writer)]


def base_url(request: Request) -> str:
    """Where links point: alerts.public_url when set (behind a proxy), else this request's host."""
    configured = request.app.state.settings.alerts.public_url
    return (configured or str(request.base_url)).rstrip("/")


# --- models ---------------------------------------------------------------------------------


class ResultOut(BaseModel):
    id: int = Field(description="The result id: /results/{id} in the dashboard.")
    frame_id: int
    source: str
    model_version: str
    method: str = Field(description="The scoring method: with model_version, the scale of the score.")
    score: float
    threshold: float = Field(description="The threshold the verdict was made against.")
    is_anomaly: bool
    shadow: bool = Field(
        description="A candidate's verdict, scored beside the live model: never alerted, never in the queue."
    )
    landed_at: datetime = Field(description="UTC, the file's modification time.")
    scored_at: datetime = Field(description="UTC, when the result was committed.")
    label: Literal["anomaly", "normal"] | None = Field(description="The frame's latest review, if any.")
    pruned: bool = Field(description="Its image and maps were deleted by the retention policy.")
    url: str = Field(description="The dashboard's page of this result.")


class ReviewOut(BaseModel):
    id: int
    label: Literal["anomaly", "normal"]
    reviewer: str
    note: str | None
    created_at: datetime


class ResultDetail(ResultOut):
    path: str = Field(description="Where the file landed.")
    stored_path: str | None = Field(description="Its archive or quarantine file, relative to data_dir.")
    pruned_at: datetime | None
    maps: dict[str, str] = Field(description="Map kind → picture URL (none once pruned).")
    reviews: list[ReviewOut]


class ResultPage(BaseModel):
    items: list[ResultOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class Inbound(BaseModel):
    """A request body: no text in it holds a NUL character (the database would refuse it)."""

    @field_validator("*")
    @classmethod
    def no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("a NUL character is not allowed")
        return value


class ReviewIn(Inbound):
    label: Literal["anomaly", "normal"]
    reviewer: str = Field(min_length=1, max_length=64, description="Recorded in the audit trail.")
    note: str | None = Field(default=None, max_length=1000)


class ThresholdOut(BaseModel):
    model_version: str
    method: str
    source: str = Field(description='"*" for the model\'s default.')
    value: float
    updated_by: str | None


class ThresholdIn(Inbound):
    value: float
    by: str = Field(min_length=1, max_length=128, description="Who makes the change (audit trail).")
    model_version: str | None = Field(default=None, description="Default: the source's live model.")
    method: str | None = Field(
        default=None, description="Needed when the model version scores with several methods."
    )
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("value")
    @classmethod
    def finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("a threshold must be a finite number")
        return value


class ThresholdChangeOut(BaseModel):
    source: str
    model_version: str
    method: str
    old_value: float | None
    new_value: float
    changed_by: str
    reason: str | None
    changed_at: datetime
    verdicts_changed: int = Field(description="Stored results of the source judged again with a new verdict.")


class StatusOut(BaseModel):
    ok: bool
    problems: list[str]
    checked_at: datetime
    schema_revision: str | None
    schema_expected: str | None
    processes: list[health.ProcessView]
    backlog: health.Backlog
    alerts: health.AlertBacklog
    to_review: int
    model: health.ModelView | None
    drift: list[health.DriftView]


# --- results --------------------------------------------------------------------------------


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def _before(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        before = int(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["before"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise HTTPException(400, "Bad cursor: pass next_cursor of the previous page as it came.") from exc
    return in_id_range(before, "cursor")


def _out(
    row: operations.ResultRow, label: str | None, base: str, model: type[ResultOut] = ResultOut, **more: Any
) -> ResultOut:
    """A result as the API shows it (``model`` and ``more``: with its details)."""
    url = f"{base}/results/{row.id}"
    return model(**dataclasses.asdict(row), label=label, pruned=row.pruned_at is not None, url=url, **more)


@router.get("/results", response_model=ResultPage, dependencies=Read)
def list_results(
    request: Request,
    db: DB,
    source: str | None = None,
    since: Annotated[datetime | None, Query(description="Scored at or after (UTC).")] = None,
    until: Annotated[datetime | None, Query(description="Scored before (UTC).")] = None,
    flagged: bool | None = None,
    reviewed: bool | None = None,
    score_min: float | None = None,
    score_max: float | None = None,
    model_version: str | None = None,
    method: str | None = None,
    shadow: Annotated[
        bool, Query(description="true: candidates' verdicts (scored in shadow) instead of the pipeline's.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """Results, newest first, a page at a time (keyset paging: every page costs what the first does)."""
    query = operations.ResultQuery(
        source, since, until, flagged, reviewed, score_min, score_max, model_version, method, shadow
    )
    rows = operations.result_rows(db, query, _before(cursor), limit + 1)
    page = rows[:limit]
    labels = operations.latest_labels(db, [row.frame_id for row in page])
    base = base_url(request)
    return {
        "items": [_out(row, labels.get(row.frame_id), base) for row in page],
        "next_cursor": _cursor(page[-1].id) if len(rows) > limit else None,
    }


@router.get("/results/{result_id}", response_model=ResultDetail, dependencies=Read)
def get_result(request: Request, result_id: ResultId, db: DB) -> ResultOut:
    """One result with its frame, its reviews and links to its maps."""
    row = operations.result_row(db, result_id)
    if row is None:
        raise HTTPException(404, f"No result {result_id}.")
    reviews = operations.reviews_of(db, row.frame_id)
    base = base_url(request)
    kinds = [] if row.pruned_at else sorted(store.map_kinds(db, result_id))
    maps = {kind: f"{base}/maps/{result_id}/{kind}.png" for kind in kinds}
    label = reviews[-1].label if reviews else None
    return _out(row, label, base, ResultDetail, maps=maps, reviews=[_review(review) for review in reviews])


def _review(review: Review) -> ReviewOut:
    return ReviewOut.model_validate(review, from_attributes=True)


@router.post(
    "/results/{result_id}/reviews",
    response_model=ReviewOut,
    status_code=201,
    dependencies=Write,
    responses={
        200: {"model": ReviewOut, "description": "The same review was the frame's latest: not added again."}
    },
)
def add_review(result_id: ResultId, body: ReviewIn, db: DB, response: Response) -> ReviewOut:
    """Label the frame of a result. Sending the same review again (a retry) adds nothing: when the
    frame's latest review has this label, reviewer and note, that one is returned (200)."""
    row = operations.result_row(db, result_id)
    if row is None:
        raise HTTPException(404, f"No result {result_id}.")
    note = (body.note or "").strip() or None
    reviews = operations.reviews_of(db, row.frame_id)
    latest = reviews[-1] if reviews else None
    if latest and (latest.label, latest.reviewer, latest.note) == (body.label, body.reviewer, note):
        response.status_code = 200
        return _review(latest)
    review = store.add_review(db, row.frame_id, body.label, body.reviewer, note)
    db.commit()
    return _review(review)


# --- thresholds and status ------------------------------------------------------------------


@router.get("/thresholds", response_model=list[ThresholdOut], dependencies=Read)
def get_thresholds(db: DB, model_version: str | None = None) -> list[thresholds.ThresholdView]:
    """Each model's (version and method) default ("*") followed by its per-source thresholds."""
    try:
        return thresholds.threshold_table(db, model_version)
    except thresholds.ThresholdError as exc:
        raise HTTPException(404, str(exc)) from exc


@router.put("/thresholds/{source}", response_model=ThresholdChangeOut, dependencies=Write)
def set_threshold(source: str, body: ThresholdIn, db: DB) -> dict[str, Any]:
    """Set a source's threshold (recorded in the audit trail, as `inspector threshold set` does);
    the source's stored results are judged again."""
    try:
        model = thresholds.resolve_model(db, body.model_version, body.method, source)
        change, flipped = thresholds.set_threshold(
            db, source, model.version, model.method, body.value, body.by, body.reason
        )
    except thresholds.ThresholdError as exc:
        raise HTTPException(400, str(exc)) from exc
    db.commit()
    return {
        "source": change.source,
        "model_version": change.model_version,
        "method": change.method,
        "old_value": change.old_value,
        "new_value": change.new_value,
        "changed_by": change.changed_by,
        "reason": change.reason,
        "changed_at": change.changed_at,
        "verdicts_changed": flipped,
    }


@router.get("/status", response_model=StatusOut, dependencies=Read)
def status(request: Request) -> dict[str, Any]:
    """The health summary `inspector status` prints: processes, backlogs, and what is wrong."""
    report = health.summary(request.app.state.settings)
    return {
        "ok": report.ok,
        "problems": report.problems,
        "checked_at": report.checked_at,
        "schema_revision": report.schema,
        "schema_expected": report.schema_expected,
        "processes": report.processes,
        "backlog": report.backlog,
        "alerts": report.alerts,
        "to_review": report.to_review,
        "model": report.model,
        "drift": report.drift,
    }


# --- documentation --------------------------------------------------------------------------


@cache
def _swagger_files() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


@cache
def openapi_schema() -> dict[str, Any]:
    return get_openapi(
        title="inspector API",
        version=VERSION,
        description=__doc__.split("\n\n", 1)[1].strip(),
        routes=router.routes,
    )


@docs.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return openapi_schema()


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>inspector API</title>
<link rel="icon" href="/static/favicon.svg">
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/static/api-docs.js"></script></body></html>
"""


@docs.get("/docs")
def docs_page() -> HTMLResponse:
    """Swagger UI over /openapi.json; its script and style come from this server (the CSP allows
    nothing else, and a factory network may reach nothing else)."""
    return HTMLResponse(DOCS_PAGE)


@docs.get("/docs/{name}")
def docs_file(name: Literal["swagger-ui-bundle.js", "swagger-ui.css"]) -> FileResponse:
    return FileResponse(_swagger_files() / name, headers={"Cache-Control": "public, max-age=86400"})
