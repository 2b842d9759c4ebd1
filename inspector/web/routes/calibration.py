"""Calibration: the labelled scores of one model and method, the threshold for a target recall,
and applying it to a source (the rules and the math: pipeline/thresholds.py; the labelled scores
kept between pages: web/labelled.py)."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from inspector.pipeline import thresholds
from inspector.store import queries, review
from inspector.store.db import session_scope
from inspector.web import charts
from inspector.web.labelled import LabelledScores
from inspector.web.pages import DB, Writer, param, render, see_other

router = APIRouter()
LABELLED = LabelledScores()  # the labelled scores, updated by what changed since the last page
log = logging.getLogger(__name__)


def warm(db_url: str) -> None:
    """Read the labelled scores of the page an operator opens first (the newest scorer, every
    source) into ``LABELLED``: the one full read costs the first page more than all else
    (~0.25 s at 100 000 labelled frames), so the dashboard does it while starting, in a thread."""
    try:
        with session_scope(db_url) as session:
            scorers = review.scorers(session)
            if scorers:
                LABELLED.get(session, *scorers[0], None)
    except Exception:  # a dashboard before its first migration or result: nothing to read yet
        log.debug("calibration: nothing read ahead", exc_info=True)


@router.get("/calibration")
def calibration_view(request: Request, session: DB) -> HTMLResponse:
    params = request.query_params
    scorers = review.scorers(session)
    version = param(params, "model_version", str) or (scorers[0][0] if scorers else None)
    of_version = [m for v, m in scorers if v == version]
    method = param(params, "method", str) or (of_version[0] if of_version else None)
    source = param(params, "source", str)
    target = param(params, "target", float) or 0.99
    if not 0 < target <= 1:
        raise HTTPException(400, "Target recall must be in (0, 1].")
    context: dict = {
        "versions": list(dict.fromkeys(v for v, _ in scorers)),
        "methods": of_version,
        "sources": review.sources(session),
        "version": version,
        "method": method,
        "source": source,
        "target": target,
        "changes": queries.threshold_changes(session),
    }
    if version and method:
        context |= _calibrate(session, version, method, source, target)
    return render(request, "calibration.html", context)


def _calibrate(session: Session, version: str, method: str, source: str | None, target: float) -> dict:
    """Labelled scores turned into the calibration page's numbers and charts."""
    try:
        current = thresholds.effective_threshold(session, version, method, source)
    except thresholds.ThresholdError as exc:
        raise HTTPException(404, str(exc)) from exc
    labelled = LABELLED.get(session, version, method, source)
    anomalies, samples = labelled.positives, len(labelled.scores)
    context: dict = {
        "samples": samples,
        "anomalies": anomalies,
        "normals": samples - anomalies,
        "current": current,
        "labelled_source": review.most_labelled_source(session, version, method),
    }
    if not anomalies or anomalies == samples:
        return context
    suggested = labelled.threshold_for_recall(target)
    points = labelled.curve(max_points=charts.CURVE_POINTS)
    marks = {"current": labelled.operating(current), "suggested": labelled.operating(suggested)}
    return context | {
        "suggested": suggested,
        "marks": marks,
        "auc": labelled.auc(),
        "histogram": charts.histogram(labelled, {k: m.threshold for k, m in marks.items()}),
        "roc": charts.curve(points, "roc", marks),
        "pr": charts.curve(points, "pr", marks),
    }


@router.post("/calibration/apply")
def apply_threshold(
    request: Request,
    user: Writer,
    session: DB,
    source: Annotated[str, Form()],
    model_version: Annotated[str, Form()],
    method: Annotated[str, Form()],
    value: Annotated[float, Form()],
    target: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    exact: Annotated[float | None, Form()] = None,
) -> RedirectResponse:
    value = as_submitted(value, exact)
    if source not in review.sources(session):
        raise HTTPException(400, f"Unknown source {source!r}.")
    try:
        change, changed = thresholds.set_threshold(
            session, source, model_version, method, value, user, reason.strip()[:500] or None
        )
    except thresholds.ThresholdError as exc:
        raise HTTPException(400, str(exc)) from exc
    session.commit()
    back = urlencode({"model_version": model_version, "method": method, "source": source, "target": target})
    message = (
        f"Threshold for {source} ({model_version}, {method}): {change.old_value:.4g} → {value:.4g}; "
        f"{changed} verdicts changed."
    )
    return see_other(f"/calibration?{back}", message, request)


def as_submitted(shown: float, exact: float | None) -> float:
    """The threshold a form meant: its field shows the exact value to 4 significant digits
    (``exact`` rides along hidden), so a value left as shown means the exact one."""
    return exact if exact is not None and f"{shown:.4g}" == f"{exact:.4g}" else shown
