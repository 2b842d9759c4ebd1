"""The dashboard's queries: the review queue, labels, calibration data and overview counts.

The queue is ordered by (score, result id) descending and paged by keyset, so page 400 of
a backlog costs what page 1 does. A frame leaves the queue once it has any review.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, union, update
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from inspector.store.models import Frame, Model, Result, ResultMap, Review, Threshold, ThresholdChange

Key = tuple[float, int]  # (score, result id): the queue's sort key


@dataclass(frozen=True)
class QueueFilter:
    """What the operator narrowed the queue to; None means no restriction."""

    start: datetime | None = None  # on the frame's landing time, UTC
    end: datetime | None = None
    source: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    model_version: str | None = None
    flagged_only: bool = True  # False: unflagged frames too, to sample normals for calibration


@dataclass
class QueuePage:
    rows: list[Result]
    has_next: bool
    has_prev: bool


def _queue_query(filters: QueueFilter) -> Select[tuple[Result]]:
    reviewed = exists().where(Review.frame_id == Result.frame_id)
    query = select(Result).join(Result.frame).where(~reviewed)
    if filters.flagged_only:
        query = query.where(Result.is_anomaly.is_(True))
    if filters.start is not None:
        query = query.where(Frame.landed_at >= filters.start)
    if filters.end is not None:
        query = query.where(Frame.landed_at < filters.end)
    if filters.source:
        query = query.where(Frame.source == filters.source)
    if filters.score_min is not None:
        query = query.where(Result.score >= filters.score_min)
    if filters.score_max is not None:
        query = query.where(Result.score <= filters.score_max)
    if filters.model_version:
        query = query.where(Result.model_version == filters.model_version)
    return query


def _below(key: Key) -> ColumnElement[bool]:
    return or_(Result.score < key[0], and_(Result.score == key[0], Result.id < key[1]))


def _above(key: Key) -> ColumnElement[bool]:
    return or_(Result.score > key[0], and_(Result.score == key[0], Result.id > key[1]))


def queue_page(
    session: Session,
    filters: QueueFilter,
    after: Key | None = None,
    before: Key | None = None,
    limit: int = 50,
) -> QueuePage:
    """One page of the queue, after (or before) a cursor key; highest score first."""
    query = _queue_query(filters).options(selectinload(Result.frame))
    if before is not None:
        rows = list(
            session.scalars(
                query.where(_above(before)).order_by(Result.score.asc(), Result.id.asc()).limit(limit + 1)
            )
        )
        if len(rows) > limit:
            return QueuePage(rows[:limit][::-1], has_next=True, has_prev=True)
        after = None  # reached the top: show the first page
    if after is not None:
        query = query.where(_below(after))
    rows = list(session.scalars(query.order_by(Result.score.desc(), Result.id.desc()).limit(limit + 1)))
    return QueuePage(rows[:limit], has_next=len(rows) > limit, has_prev=after is not None)


def queue_count(session: Session, filters: QueueFilter) -> int:
    return session.scalar(select(func.count()).select_from(_queue_query(filters).subquery())) or 0


def neighbour(session: Session, filters: QueueFilter, key: Key, forward: bool) -> int | None:
    """The result id next to ``key`` in queue order (forward: lower score), if any."""
    query = _queue_query(filters).with_only_columns(Result.id)
    if forward:
        query = query.where(_below(key)).order_by(Result.score.desc(), Result.id.desc())
    else:
        query = query.where(_above(key)).order_by(Result.score.asc(), Result.id.asc())
    return session.scalar(query.limit(1))


def get_result(session: Session, result_id: int) -> Result | None:
    """A result with its frame and the frame's reviews loaded."""
    query = (
        select(Result)
        .where(Result.id == result_id)
        .options(selectinload(Result.frame).selectinload(Frame.reviews))
    )
    return session.scalar(query)


def map_kinds(session: Session, result_id: int) -> set[str]:
    return set(session.scalars(select(ResultMap.kind).where(ResultMap.result_id == result_id)))


def result_maps(session: Session, result_id: int, kinds: Iterable[str]) -> dict[str, bytes]:
    """The stored PNG planes of a result, by kind (only the kinds asked for that exist)."""
    rows = session.execute(
        select(ResultMap.kind, ResultMap.png).where(
            ResultMap.result_id == result_id, ResultMap.kind.in_(list(kinds))
        )
    )
    return {kind: png for kind, png in rows}


def add_review(session: Session, frame_id: int, label: str, reviewer: str, note: str | None = None) -> Review:
    review = Review(frame_id=frame_id, label=label, reviewer=reviewer, note=note or None)
    session.add(review)
    session.flush()
    return review


def sources(session: Session) -> list[str]:
    return list(session.scalars(select(Frame.source).distinct().order_by(Frame.source)))


def model_versions(session: Session) -> list[str]:
    """Versions that have results, newest model first."""
    used = select(Result.model_version).distinct().scalar_subquery()
    query = select(Model.version).where(Model.version.in_(used)).order_by(Model.created_at.desc())
    return list(session.scalars(query))


def effective_threshold(session: Session, source: str, model_version: str) -> float | None:
    """The source's own threshold for this model, else the model's default."""
    own = session.scalar(
        select(Threshold.value).where(Threshold.source == source, Threshold.model_version == model_version)
    )
    return own if own is not None else default_threshold(session, model_version)


def labelled_scores(
    session: Session, model_version: str, source: str | None = None
) -> list[tuple[float, str]]:
    """(score, latest label) of every reviewed frame scored by this model version."""
    return [(score, label) for _, score, label in labelled_frames(session, model_version, source)]


def labelled_frames(
    session: Session,
    model_version: str,
    source: str | None = None,
    since: tuple[int, int] | None = None,
) -> list[tuple[int, float, str]]:
    """(frame id, score, latest label) of the reviewed frames scored by this model version; with
    ``since`` = (review id, result id), only those labelled or scored after them: what changed."""
    reviews = select(Review.frame_id, func.max(Review.id).label("review_id"))
    query = select(Result.frame_id, Result.score, Review.label).where(Result.model_version == model_version)
    if since is not None:
        changed = union(
            select(Review.frame_id).where(Review.id > since[0]),
            select(Result.frame_id).where(Result.id > since[1], Result.model_version == model_version),
        ).subquery()
        reviews = reviews.where(Review.frame_id.in_(select(changed.c.frame_id)))
        query = query.where(Result.frame_id.in_(select(changed.c.frame_id)))
    latest = reviews.group_by(Review.frame_id).subquery()
    query = query.join(latest, latest.c.frame_id == Result.frame_id).join(
        Review, Review.id == latest.c.review_id
    )
    if source:
        query = query.join(Result.frame).where(Frame.source == source)
    return [(frame_id, score, label) for frame_id, score, label in session.execute(query)]


def threshold_changes(session: Session, limit: int = 20) -> list[ThresholdChange]:
    query = select(ThresholdChange).order_by(ThresholdChange.changed_at.desc(), ThresholdChange.id.desc())
    return list(session.scalars(query.limit(limit)))


def reapply_threshold(session: Session, source: str, model_version: str, value: float) -> int:
    """Judge a source's stored results again under a new threshold; returns how many verdicts flipped.

    Each result keeps the threshold its verdict was made against, so rows stay self-consistent.
    """
    scope = (
        Result.model_version == model_version,
        Result.frame_id.in_(select(Frame.id).where(Frame.source == source)),
    )
    flipped = session.scalar(
        select(func.count()).select_from(Result).where(*scope, Result.is_anomaly != (Result.score > value))
    )
    statement = (
        update(Result)
        .where(*scope)
        .values(threshold=value, is_anomaly=Result.score > value)
        .execution_options(synchronize_session=False)
    )
    session.execute(statement)
    return flipped or 0


@dataclass
class Overview:
    frames_per_hour: list[tuple[datetime, int]]  # every hour of the window, oldest first
    results: int  # in the window
    flagged: int  # in the window
    backlog: int  # frames not yet scored (pending, queued, processing)
    to_review: int  # flagged results without a review
    quarantined: int

    @property
    def flag_rate(self) -> float | None:
        return self.flagged / self.results if self.results else None


def _hour(session: Session, column: InstrumentedAttribute[datetime]) -> ColumnElement[Any]:
    """The start of the hour, in each dialect's own words."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:00:00", column)
    return func.date_trunc("hour", column)


def overview(session: Session, since: datetime, hours: list[datetime]) -> Overview:
    """Throughput since ``since``, bucketed into ``hours`` (their starts), plus the backlogs."""
    bucket = _hour(session, Frame.registered_at).label("hour")
    counted = session.execute(
        select(bucket, func.count()).where(Frame.registered_at >= since).group_by(bucket)
    ).all()
    by_hour = {(h if isinstance(h, datetime) else datetime.fromisoformat(h)): n for h, n in counted}
    results, flagged = session.execute(
        select(func.count(), func.count().filter(Result.is_anomaly.is_(True))).where(
            Result.created_at >= since
        )
    ).one()
    statuses = dict(session.execute(select(Frame.status, func.count()).group_by(Frame.status)).all())
    return Overview(
        frames_per_hour=[(h, by_hour.get(h, 0)) for h in hours],
        results=results,
        flagged=flagged,
        backlog=sum(statuses.get(s, 0) for s in ("pending", "queued", "processing")),
        to_review=queue_count(session, QueueFilter()),
        quarantined=statuses.get("quarantined", 0),
    )


def default_threshold(session: Session, model_version: str) -> float | None:
    return session.scalar(select(Model.default_threshold).where(Model.version == model_version))


def set_threshold(
    session: Session, source: str, model_version: str, value: float, who: str, reason: str | None = None
) -> ThresholdChange:
    """Set a source's threshold for a model version and record the change (who, old → new)."""
    row = session.scalar(
        select(Threshold).where(Threshold.source == source, Threshold.model_version == model_version)
    )
    old = row.value if row else default_threshold(session, model_version)
    if row is None:
        row = Threshold(source=source, model_version=model_version, value=value, updated_by=who)
        session.add(row)
    else:
        row.value, row.updated_by = value, who
    change = ThresholdChange(
        source=source,
        model_version=model_version,
        old_value=old,
        new_value=value,
        changed_by=who,
        reason=reason,
    )
    session.add(change)
    session.flush()
    return change


def most_labelled_source(session: Session, model_version: str, recent: int = 1000) -> str | None:
    """The source most of the latest ``recent`` labels on this model's results came from: the
    camera being calibrated, which the calibration page offers to apply its threshold to
    (the latest labels, not all: a few milliseconds at any number of reviews)."""
    latest = (
        select(Frame.source)
        .join(Review, Review.frame_id == Frame.id)
        .where(exists().where(Result.frame_id == Frame.id, Result.model_version == model_version))
        .order_by(Review.id.desc())
        .limit(recent)
        .subquery()
    )
    counted = select(latest.c.source).group_by(latest.c.source).order_by(func.count().desc(), latest.c.source)
    return session.scalar(counted.limit(1))


@dataclass(frozen=True)
class LabelsStamp:
    """Changes whenever labelled_scores may: a review added or deleted, a result added."""

    review_id: int  # the newest review (0: none)
    reviews: int  # how many
    result_id: int  # the newest result

    def only_added_since(self, session: Session, earlier: LabelsStamp) -> bool:
        """Whether everything between ``earlier`` and this stamp was added (no review deleted),
        so that reading what changed since it brings labelled scores up to date."""
        added = session.scalar(select(func.count(Review.id)).where(Review.id > earlier.review_id)) or 0
        return self.reviews - earlier.reviews == added


def labels_stamp(session: Session) -> LabelsStamp:
    newest, count = session.execute(select(func.max(Review.id), func.count(Review.id))).one()
    return LabelsStamp(newest or 0, count, session.scalar(select(func.max(Result.id))) or 0)
