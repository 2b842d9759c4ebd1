"""The model registry's SQL: each source's models by role, the audit trail of role changes, and
the frames two models both scored (the rules and the comparison: pipeline/registry.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from inspector.store.models import ALL_SOURCES, Frame, Model, ModelChange, ModelRole, Result, Review, utcnow


@dataclass(frozen=True)
class Assigned:
    """A model (checkpoint version, scored with one method) holding a role for a source."""

    source: str
    role: str
    version: str
    method: str
    path: str  # its checkpoint file, as registered
    updated_at: datetime


def assignments(session: Session, source: str | None = None, roles: tuple[str, ...] = ()) -> list[Assigned]:
    """Rows of the registry (of one source and ``*`` when given; of these roles when given), with
    their checkpoint's path; by source, then live, candidate, retired, newest first."""
    stmt = select(
        ModelRole.source,
        ModelRole.role,
        ModelRole.model_version,
        ModelRole.method,
        Model.path,
        ModelRole.updated_at,
    ).join(Model, (Model.version == ModelRole.model_version) & (Model.method == ModelRole.method))
    if source is not None:
        stmt = stmt.where(ModelRole.source.in_({source, ALL_SOURCES}))
    if roles:
        stmt = stmt.where(ModelRole.role.in_(roles))
    order = {"live": 0, "candidate": 1, "retired": 2}
    rows = [Assigned(*row) for row in session.execute(stmt)]
    return sorted(rows, key=lambda a: (a.source, order[a.role], -a.updated_at.timestamp()))


def default_models(session: Session, source: str | None = None) -> list[Model]:
    """The models a source's thresholds and status mean when none is named, the likeliest last:
    its live model where the registry names one (its own, else that of ``*``), else the models
    that hold no role (the configured model, as the pipeline registered it), oldest first. Without
    a source, models live for some source count too. Never a model registered to be tried only."""
    for where in (source, ALL_SOURCES):
        live = None if where is None else holder(session, where, "live")
        if live is not None:
            stmt = select(Model).where(Model.version == live.model_version, Model.method == live.method)
            return [session.scalars(stmt).one()]
    roles = select(ModelRole.id).where(
        ModelRole.model_version == Model.version, ModelRole.method == Model.method
    )
    unassigned = ~roles.exists()
    if source is None:
        unassigned = unassigned | roles.where(ModelRole.role == "live").exists()
    return list(session.scalars(select(Model).where(unassigned).order_by(Model.created_at, Model.id)))


def role_of(session: Session, source: str, version: str, method: str) -> ModelRole | None:
    stmt = select(ModelRole).where(
        ModelRole.source == source, ModelRole.model_version == version, ModelRole.method == method
    )
    return session.scalar(stmt)


def holder(session: Session, source: str, role: str) -> ModelRole | None:
    """The row holding a one-per-source role (live, candidate) for exactly this source."""
    return session.scalar(select(ModelRole).where(ModelRole.source == source, ModelRole.role == role))


def set_role(session: Session, source: str, version: str, method: str, role: str) -> None:
    """Give a model a role for a source (its row made or changed); flushed, so the one-per-source
    indexes judge each step of a change in order."""
    row = role_of(session, source, version, method)
    if row is None:
        session.add(ModelRole(source=source, model_version=version, method=method, role=role))
    else:
        row.role, row.updated_at = role, utcnow()
    session.flush()


Key = tuple[str, str]  # (model version, method); None where a change names the configured model


def record_change(
    session: Session,
    *,
    source: str,
    action: str,
    model: Key | None,
    role: str,
    who: str,
    reason: str | None,
    previous: Key | None = None,
) -> ModelChange:
    change = ModelChange(
        source=source,
        action=action,
        model_version=model[0] if model else None,
        method=model[1] if model else None,
        role=role,
        previous_version=previous[0] if previous else None,
        previous_method=previous[1] if previous else None,
        changed_by=who,
        reason=reason,
    )
    session.add(change)
    session.flush()
    return change


def last_promotion(session: Session, source: str, version: str, method: str) -> ModelChange | None:
    """The latest change that made this model live for a source by promoting it (or registering
    it live), not by a rollback: undoing it walks back through the promotions, not to and fro."""
    stmt = (
        select(ModelChange)
        .where(
            ModelChange.source == source,
            ModelChange.action.in_(("promote", "register")),
            ModelChange.role == "live",
            ModelChange.model_version == version,
            ModelChange.method == method,
        )
        .order_by(ModelChange.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def changes(session: Session, source: str | None = None, limit: int = 20) -> list[ModelChange]:
    """The audit trail, newest first."""
    stmt = select(ModelChange).order_by(ModelChange.id.desc()).limit(limit)
    if source is not None:
        stmt = stmt.where(ModelChange.source == source)
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class Pair:
    """A frame scored by both models compared, with its latest label."""

    frame_id: int
    label: str | None
    live_id: int
    live_score: float
    live_flagged: bool
    candidate_id: int
    candidate_score: float
    candidate_flagged: bool


def scored_by_both(
    session: Session,
    live: Key,
    candidate: Key,
    source: str | None,
    reviewed: bool = False,
    last: int | None = None,
) -> list[Pair]:
    """Frames (of a source; None: all) that both models scored, newest first: with ``reviewed``,
    those with a label; with ``last``, only the newest that many."""
    mine, theirs = aliased(Result), aliased(Result)
    later = aliased(Review)
    latest = (
        select(Review.frame_id, Review.label)
        .where(~select(later.id).where(later.frame_id == Review.frame_id, later.id > Review.id).exists())
        .subquery()
    )
    stmt = (
        select(
            mine.frame_id,
            latest.c.label,
            mine.id,
            mine.score,
            mine.is_anomaly,
            theirs.id,
            theirs.score,
            theirs.is_anomaly,
        )
        .join(theirs, theirs.frame_id == mine.frame_id)
        .join(latest, latest.c.frame_id == mine.frame_id, isouter=not reviewed)
        .where(
            mine.model_version == live[0],
            mine.method == live[1],
            theirs.model_version == candidate[0],
            theirs.method == candidate[1],
        )
        .order_by(mine.frame_id.desc())
        .limit(last)
    )
    if source is not None:
        stmt = stmt.join(Frame, Frame.id == mine.frame_id).where(Frame.source == source)
    return [Pair(*row) for row in session.execute(stmt)]
