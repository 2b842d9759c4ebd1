"""The review queue: flagged, unreviewed results, highest score first, filtered and paged by keyset."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from inspector.store import review
from inspector.store.models import Result
from inspector.web.pages import DB, in_id_range, param, render, templates

router = APIRouter()
FILTER_KEYS = ("start", "end", "source", "score_min", "score_max", "model_version", "method", "all")
PAGE_SIZE = 50


def parse_filter(params: Mapping[str, str]) -> review.QueueFilter:
    """The queue filter from query (or form) fields; times are UTC."""
    return review.QueueFilter(
        start=param(params, "start", datetime.fromisoformat),
        end=param(params, "end", datetime.fromisoformat),
        source=param(params, "source", str),
        score_min=param(params, "score_min", float),
        score_max=param(params, "score_max", float),
        model_version=param(params, "model_version", str),
        method=param(params, "method", str),
        flagged_only=params.get("all") != "1",
    )


def filter_query(params: Mapping[str, str]) -> str:
    """The filter part of a query string, to carry through frame views and reviews."""
    return urlencode([(k, params[k]) for k in FILTER_KEYS if params.get(k)])


def parse_key(raw: str | None) -> review.Key | None:
    if not raw:
        return None
    score, _, ident = raw.rpartition(":")
    try:
        key = float(score), int(ident)
    except ValueError as exc:
        raise HTTPException(400, f"Bad page cursor: {raw!r}") from exc
    if not math.isfinite(key[0]):
        raise HTTPException(400, f"Bad page cursor: {raw!r}")
    return key[0], in_id_range(key[1], "page cursor")


def key_of(result: Result) -> str:
    return f"{result.score!r}:{result.id}"


def _context(request: Request, session: Session) -> dict:
    params = request.query_params
    filters = parse_filter(params)
    page = review.queue_page(
        session, filters, parse_key(params.get("after")), parse_key(params.get("before")), PAGE_SIZE
    )
    return {
        "page": page,
        "count": review.queue_count(session, filters),
        "filters": filters,
        "params": params,
        "q": filter_query(params),
        "key_of": key_of,
    }


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/queue")


@router.get("/queue")
def queue(request: Request, session: DB) -> HTMLResponse:
    context = _context(request, session)
    scorers = review.scorers(session)
    context |= {
        "sources": review.sources(session),
        "versions": list(dict.fromkeys(version for version, _ in scorers)),
        "methods": sorted({method for _, method in scorers}),
    }
    return render(request, "queue.html", context)


@router.get("/queue/rows")
def queue_rows(request: Request, session: DB) -> HTMLResponse:
    """The queue table's body alone: the page polls it to show new frames without reloading."""
    context = _context(request, session)
    headers = {"X-Queue-Count": str(context["count"]), "Cache-Control": "no-store"}
    return templates.TemplateResponse(request, "_queue_rows.html", context, headers=headers)
