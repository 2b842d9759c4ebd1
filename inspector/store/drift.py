"""The drift monitor's SQL: a source's live model and its latest results, the monitor's state per
source and quantity watched, drifts found and their alerts (the rules: pipeline/drift.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspector.store.models import AlertOutbox, DriftEvent, DriftState, Frame, Model, Result

Key = tuple[str, str]  # (model version, method)


def live_sources(session: Session) -> list[str]:
    return list(session.scalars(select(Frame.source).distinct().order_by(Frame.source)))


def latest_live_model(session: Session, source: str) -> Key | None:
    """The (version, method) of the source's latest live result: the model scoring it now."""
    stmt = (
        select(Result.model_version, Result.method)
        .join(Frame, Frame.id == Result.frame_id)
        .where(Frame.source == source, Result.shadow.is_(False))
        .order_by(Result.id.desc())
        .limit(1)
    )
    row = session.execute(stmt).first()
    return None if row is None else (row[0], row[1])


def recent_results(session: Session, source: str, model: Key, limit: int) -> list[tuple[float, float | None]]:
    """The source's latest ``limit`` live results by this model, newest first: (score, level)."""
    stmt = (
        select(Result.score, Result.level)
        .join(Frame, Frame.id == Result.frame_id)
        .where(
            Frame.source == source,
            Result.model_version == model[0],
            Result.method == model[1],
            Result.shadow.is_(False),
        )
        .order_by(Result.id.desc())
        .limit(limit)
    )
    return [(score, level) for score, level in session.execute(stmt)]


def model_config(session: Session, model: Key) -> dict | None:
    stmt = select(Model.config).where(Model.version == model[0], Model.method == model[1])
    return session.scalar(stmt)


def states(session: Session, source: str | None = None, lock: bool = False) -> list[DriftState]:
    """The monitor's states (of one source; ``lock``: held until the commit, on PostgreSQL)."""
    stmt = select(DriftState).order_by(DriftState.source, DriftState.watched)
    if source is not None:
        stmt = stmt.where(DriftState.source == source)
    return list(session.scalars(stmt.with_for_update() if lock else stmt))


def drifting(session: Session) -> list[DriftState]:
    stmt = select(DriftState).where(DriftState.drifting.is_(True))
    return list(session.scalars(stmt.order_by(DriftState.source, DriftState.watched)))


def record_event(
    session: Session,
    channels: Sequence[str],
    source: str,
    watched: str,
    model: Key,
    statistic: float,
    p_value: float,
    frames: int,
) -> DriftEvent:
    """A drift found, queued for each alert channel in the same transaction."""
    event = DriftEvent(
        source=source,
        watched=watched,
        model_version=model[0],
        method=model[1],
        statistic=statistic,
        p_value=p_value,
        frames=frames,
    )
    session.add(event)
    session.flush()
    for channel in channels:
        session.add(AlertOutbox(drift_event_id=event.id, channel=channel, source=source, attempts=0))
    return event


def pending_drifts(session: Session, channel: str, source: str) -> list[tuple[int, DriftEvent]]:
    """Undelivered drift alerts of a (channel, source): (outbox id, its drift), oldest first."""
    stmt = (
        select(AlertOutbox.id, DriftEvent)
        .join(DriftEvent, DriftEvent.id == AlertOutbox.drift_event_id)
        .where(AlertOutbox.channel == channel, AlertOutbox.source == source, AlertOutbox.sent_at.is_(None))
        .order_by(AlertOutbox.id)
    )
    return [(outbox_id, event) for outbox_id, event in session.execute(stmt)]
