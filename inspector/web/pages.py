"""What every page and route of the dashboard shares: templates, the request's database session,
the login state, query parameters.

Handlers parse the request, call the store and pipeline (all SQL and threshold rules live
there) and render a template. The dashboard draws the maps the pipeline stored; it never
runs the model, and never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from inspector.config import Settings
from inspector.store import drift
from inspector.store.db import session_scope
from inspector.store.models import MAX_ID, DriftState
from inspector.web import security

T = TypeVar("T")
HERE = Path(__file__).parent

templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["when"] = lambda t: "" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"
templates.env.filters["num"] = lambda x: "–" if x is None else f"{x:.4g}"
templates.env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}%"


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def db(request: Request) -> Iterator[Session]:
    with session_scope(settings_of(request).db_url) as session:
        yield session


DB = Annotated[Session, Depends(db)]
# A result id in a path: beyond what a database can hold it is refused (422), not looked up.
ResultId = Annotated[int, PathParam(ge=0, le=MAX_ID)]
Writer = Annotated[str, Depends(security.require_writer)]


def render(request: Request, name: str, context: dict, status: int = 200) -> HTMLResponse:
    """A page with the login state, CSRF token and any one-off message the base template shows."""
    context = {
        "drifting": _drifting(request),
        "user": security.current_user(request),
        "csrf": security.page_csrf(request),
        "writes_enabled": bool(settings_of(request).server.token),
        "flash": request.session.pop("flash", None),
        **context,
    }
    return templates.TemplateResponse(request, name, context, status_code=status)


def _drifting(request: Request) -> list[DriftState]:
    """The sources whose drift monitor says they drift: every page's banner."""
    with session_scope(settings_of(request).db_url) as session:
        return drift.drifting(session)


def see_other(url: str, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
    if flash and request is not None:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)


def in_id_range(value: int, what: str) -> int:
    """An id taken from a cursor: one no database can hold is a 400."""
    if not 0 <= value <= MAX_ID:
        raise HTTPException(400, f"Bad {what}: {value} is not an id.")
    return value


def param(params: Mapping[str, str], key: str, parse: Callable[[str], T]) -> T | None:
    """A query (or form) parameter parsed, None when empty; a bad value is a 400."""
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
