"""Calibration: the labelled scores of one model and method, the threshold for a target recall,
and applying it to a source (the rules and the math: pipeline/thresholds.py)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from inspector.pipeline import thresholds
from inspector.store import queries, review
from inspector.web import charts
from inspector.web.pages import DB, Writer, param, render, see_other

router = APIRouter()


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
    samples = review.labelled_scores(session, version, method, source)
    anomalies = sum(1 for _, label in samples if label == "anomaly")
    context: dict = {
        "samples": len(samples),
        "anomalies": anomalies,
        "normals": len(samples) - anomalies,
        "current": current,
    }
    if not anomalies or anomalies == len(samples):
        return context
    suggested = thresholds.threshold_for_recall(samples, target)
    points = thresholds.curve(samples)
    marks = {
        "current": thresholds.operating(samples, current),
        "suggested": thresholds.operating(samples, suggested),
    }
    return context | {
        "suggested": suggested,
        "marks": marks,
        "auc": thresholds.roc_auc(points),
        "histogram": charts.histogram(samples, {k: m.threshold for k, m in marks.items()}),
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
) -> RedirectResponse:
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
