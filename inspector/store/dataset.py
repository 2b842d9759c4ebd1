"""Scored frames as a data set, with their latest label and the pipeline's verdict: what
`inspector export` writes and `inspector retrain` reads (their rules: pipeline/dataset.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from inspector.store.models import Frame, Result, Review


@dataclass
class DatasetRow:
    frame_id: int
    content_hash: str
    source: str
    landed_path: str  # where it landed
    stored_path: str | None  # its archive file, relative to data_dir (None: where it landed, or pruned)
    pruned_at: datetime | None
    landed_at: datetime
    label: str | None  # the latest review's, if any
    reviewer: str | None
    note: str | None
    reviewed_at: datetime | None
    result_id: int
    model_version: str  # the pipeline's verdict (the live model's, never a candidate's)
    method: str
    score: float
    threshold: float
    is_anomaly: bool
    scored_at: datetime


def dataset_rows(
    session: Session, since: datetime | None = None, source: str | None = None, reviewed: bool = True
) -> list[DatasetRow]:
    """Each frame with a live result, its latest review (``reviewed``: only frames that have one,
    reviewed since ``since``; else every frame scored since then) and its latest live result."""
    later = aliased(Review)
    latest_review = (
        select(Review)
        .where(~select(later.id).where(later.frame_id == Review.frame_id, later.id > Review.id).exists())
        .subquery()
    )
    latest_result = (
        select(func.max(Result.id).label("id")).where(Result.shadow.is_(False)).group_by(Result.frame_id)
    ).subquery()
    stmt = (
        select(
            Frame.id,
            Frame.content_hash,
            Frame.source,
            Frame.path,
            Frame.stored_path,
            Frame.pruned_at,
            Frame.landed_at,
            latest_review.c.label,
            latest_review.c.reviewer,
            latest_review.c.note,
            latest_review.c.created_at,
            Result.id,
            Result.model_version,
            Result.method,
            Result.score,
            Result.threshold,
            Result.is_anomaly,
            Result.created_at,
        )
        .join(Result, Result.frame_id == Frame.id)
        .join(latest_result, latest_result.c.id == Result.id)
        .join(latest_review, latest_review.c.frame_id == Frame.id, isouter=not reviewed)
        .order_by(Frame.id)
    )
    if since is not None:
        stmt = stmt.where((latest_review.c.created_at if reviewed else Result.created_at) >= since)
    if source is not None:
        stmt = stmt.where(Frame.source == source)
    return [DatasetRow(*row) for row in session.execute(stmt)]
