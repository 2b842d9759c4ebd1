"""Where the line between normal and anomaly lies: a per-source override, else the model's default.

`inspector threshold set` and the dashboard both record changes through the one store
function (store.review.set_threshold), so every change lands in the audit trail.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from inspector.store import queries, review
from inspector.store.models import ThresholdChange


class ThresholdError(ValueError):
    """A threshold that cannot be set: unknown model, or not a finite number."""


@dataclass
class ThresholdView:
    model_version: str
    source: str  # "*" for the model's default
    value: float
    updated_by: str | None


def resolve_model(session: Session, model_version: str | None) -> str:
    """The given model version, checked; or the model that scored most recently registered."""
    model = queries.get_model(session, model_version) if model_version else queries.latest_model(session)
    if model is None:
        raise ThresholdError(
            f"unknown model version {model_version!r}"
            if model_version
            else "no model is registered yet: score some frames first, or name a version"
        )
    return model.version


def effective_thresholds(
    session: Session, model_version: str, default: float, sources: Iterable[str]
) -> dict[str, float]:
    """The threshold each source's frames are judged by under this model."""
    sources = set(sources)
    overrides = queries.threshold_overrides(session, model_version, sources)
    return {source: overrides.get(source, default) for source in sources}


def set_threshold(
    session: Session,
    source: str,
    model_version: str,
    value: float,
    who: str,
    reason: str | None = None,
) -> tuple[ThresholdChange, int]:
    """Set a source's threshold for a model version, record who changed it, from what, and why,
    and judge that source's stored results again; returns the change and how many verdicts flipped.

    The CLI and the dashboard both come here, so a threshold means the same wherever it is set.
    """
    if not math.isfinite(value):
        raise ThresholdError(f"a threshold must be a finite number, not {value}")
    if queries.get_model(session, model_version) is None:
        raise ThresholdError(f"unknown model version {model_version!r}")
    if not source or not who:
        raise ThresholdError("a threshold change needs a source and the name of who made it")
    change = review.set_threshold(session, source, model_version, float(value), who, reason)
    return change, review.reapply_threshold(session, source, model_version, float(value))


def threshold_table(session: Session, model_version: str | None = None) -> list[ThresholdView]:
    """Each model's default followed by its per-source overrides."""
    views = []
    models = [queries.get_model(session, model_version)] if model_version else queries.list_models(session)
    overrides = queries.list_thresholds(session, model_version)
    for model in models:
        if model is None:
            raise ThresholdError(f"unknown model version {model_version!r}")
        views.append(ThresholdView(model.version, "*", model.default_threshold, None))
        views.extend(
            ThresholdView(t.model_version, t.source, t.value, t.updated_by)
            for t in overrides
            if t.model_version == model.version
        )
    return views
