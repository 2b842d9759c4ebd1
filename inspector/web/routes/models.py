"""The Models page: each source's live model, candidate and retired ones, live against candidate
on the frames both scored, promote and roll back, and the registry's audit trail (the rules:
pipeline/registry.py; the comparison: pipeline/compare.py)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from inspector.pipeline import registry
from inspector.pipeline.compare import compare
from inspector.pipeline.registry import RegistryError
from inspector.pipeline.thresholds import ThresholdError
from inspector.store import registry as store
from inspector.store import review
from inspector.store.models import ALL_SOURCES
from inspector.web.pages import DB, Writer, param, render, see_other, settings_of

router = APIRouter()
RECENT = 500  # frames both models scored, newest first, looked at for disagreements


@router.get("/models")
def models_view(request: Request, session: DB) -> HTMLResponse:
    rows = store.assignments(session)
    registered = list(dict.fromkeys(row.source for row in rows))
    sources = list(dict.fromkeys([*registered, *review.sources(session), ALL_SOURCES]))
    with_candidate = [row.source for row in rows if row.role == "candidate"]
    default = with_candidate[0] if with_candidate else settings_of(request).watch.source
    source = param(request.query_params, "source", str) or default
    held = registry.lineup_of(rows, source)
    context: dict = {
        "sources": sources,
        "source": source,
        "roles": [row for row in rows if row.source in (source, ALL_SOURCES)],
        "lineup": held,
        "own_live": store.holder(session, source, "live"),
        "changes": store.changes(session, source),
        "configured": settings_of(request).model_path,
        "recent": RECENT,
    }
    if held.candidate is not None:
        try:
            context["comparison"] = compare(session, source, RECENT)
        except (RegistryError, ThresholdError) as exc:
            context["compare_error"] = str(exc)
    return render(request, "models.html", context)


def _back(source: str) -> str:
    return "/models?" + urlencode({"source": source})


@router.post("/models/promote")
def promote(
    request: Request,
    user: Writer,
    session: DB,
    source: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    threshold: Annotated[str, Form()] = "carry-over",
) -> RedirectResponse:
    if threshold not in registry.THRESHOLD_CHOICES:
        raise HTTPException(400, f"Bad threshold choice: {threshold[:40]!r}.")
    try:
        promotion = registry.promote(
            session,
            source,
            who=user,
            reason=reason.strip()[:500] or None,
            carry=registry.THRESHOLD_CHOICES[threshold],
        )
    except RegistryError as exc:
        raise HTTPException(400, str(exc)) from exc
    session.commit()
    change = promotion.change
    message = " ".join(
        [
            f"{change.model_version} ({change.method}) is the live model of {source} now.",
            *(f"{line}." for line in promotion.lines(5)),
        ]
    )
    return see_other(_back(source), message, request)


@router.post("/models/rollback")
def rollback(
    request: Request,
    user: Writer,
    session: DB,
    source: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    try:
        change = registry.rollback(session, source, user, reason.strip()[:500] or None)
    except RegistryError as exc:
        raise HTTPException(400, str(exc)) from exc
    session.commit()
    live = "the configured model" if change.model_version is None else change.model_version
    message = f"Rolled back {source}: {change.previous_version} retired, {live} live again."
    return see_other(_back(source), message, request)
