"""The dashboard's queries: the review queue, labels, calibration data, overview counts and the
reviewers' logins (thresholds' SQL: queries.py).

The queue is ordered by (score, result id) descending and paged by keyset, so page 400 of
a backlog costs what page 1 does. A frame leaves the queue once it has any review. A
candidate's verdicts (shadow results) never enter it, nor the overview's counts.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, or_, select, union
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased, selectinload

from inspector.store.models import Frame, Model, Result, ResultMap, Review, WebSession, utcnow

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
    method: str | None = None
    flagged_only: bool = True  # False: unflagged frames too, to sample normals for calibration


@dataclass
class QueuePage:
    rows: list[Result]
    has_next: bool
    has_prev: bool


def _queue_query(filters: QueueFilter) -> Select[tuple[Result]]:
    reviewed = exists().where(Review.frame_id == Result.frame_id)
    query = select(Result).join(Result.frame).where(~reviewed, Result.shadow.is_(False))
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
    if filters.method:
        query = query.where(Result.method == filters.method)
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
    # An empty page past the end (a cursor beyond every row) has nothing to page back from.
    return QueuePage(rows[:limit], has_next=len(rows) > limit, has_prev=after is not None and bool(rows))


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


def scorers(session: Session) -> list[tuple[str, str]]:
    """The (model version, method) pairs that have results, newest registration first."""
    used = select(Result.id).where(Result.model_version == Model.version, Result.method == Model.method)
    query = (
        select(Model.version, Model.method)
        .where(used.exists())
        .order_by(Model.created_at.desc(), Model.id.desc())
    )
    return [(version, method) for version, method in session.execute(query)]


def labelled_frames(
    session: Session,
    model_version: str,
    method: str,
    source: str | None = None,
    since: tuple[int, int] | None = None,
) -> list[tuple[int, float, bool | int]]:
    """(frame id, score, whether its latest label is "anomaly": true or 1) of the reviewed frames
    scored by this model version and method; with ``since`` = (review id, result id), only those
    labelled or scored after them: what changed.

    Tens of thousands of rows: the label is compared in SQL and the rows come as the driver's
    own tuples (SQLAlchemy's row objects cost as much as the query itself at 100 000).
    """
    scored = (Result.model_version == model_version, Result.method == method)
    later = aliased(Review)
    relabelled = select(later.id).where(later.frame_id == Review.frame_id, later.id > Review.id).exists()
    query = (
        select(Result.frame_id, Result.score, Review.label == "anomaly")
        .join(Review, Review.frame_id == Result.frame_id)
        .where(*scored, ~relabelled)
    )
    if since is not None:
        changed = union(
            select(Review.frame_id).where(Review.id > since[0]),
            select(Result.frame_id).where(Result.id > since[1], *scored),
        ).subquery()
        query = query.where(Result.frame_id.in_(select(changed.c.frame_id)))
    if source:
        query = query.join(Frame, Frame.id == Result.frame_id).where(Frame.source == source)
    return driver_rows(session, query)


def driver_rows(session: Session, query: Select) -> list[tuple[Any, ...]]:
    """A query's rows as the database driver's tuples, in the session's transaction."""
    connection = session.connection()
    compiled = query.compile(dialect=connection.dialect)
    params = compiled.construct_params()
    cursor = connection.connection.cursor()
    try:
        if compiled.positional:
            cursor.execute(str(compiled), [params[name] for name in compiled.positiontup or ()])
        else:
            cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


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
            Result.created_at >= since, Result.shadow.is_(False)
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


def most_labelled_source(session: Session, model_version: str, method: str, recent: int = 1000) -> str | None:
    """The source most of the latest ``recent`` labels on this model's (version and method)
    results came from: the camera being calibrated, which the calibration page offers to apply
    its threshold to (the latest labels, not all: a few milliseconds at any number of reviews)."""
    latest = (
        select(Frame.source)
        .join(Review, Review.frame_id == Frame.id)
        .where(
            exists().where(
                Result.frame_id == Frame.id, Result.model_version == model_version, Result.method == method
            )
        )
        .order_by(Review.id.desc())
        .limit(recent)
        .subquery()
    )
    counted = select(latest.c.source).group_by(latest.c.source).order_by(func.count().desc(), latest.c.source)
    return session.scalar(counted.limit(1))


@dataclass(frozen=True)
class LabelsStamp:
    """Changes whenever labelled_frames may: a review added or deleted, a result added."""

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


# --- reviewers' logins ------------------------------------------------------------------------


def _hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_login(session: Session, user: str, lifetime: timedelta) -> str:
    """A new login of ``user``: returns its random id, for the cookie (the table keeps its hash).
    Logins past their lifetime are forgotten meanwhile."""
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session_id = secrets.token_urlsafe(32)
    session.add(WebSession(id_hash=_hashed(session_id), user=user, created_at=now, expires_at=now + lifetime))
    return session_id


def login_user(session: Session, session_id: str) -> str | None:
    """The user of a login still open (not logged out, not expired); None otherwise."""
    stmt = select(WebSession.user).where(
        WebSession.id_hash == _hashed(session_id), WebSession.expires_at >= utcnow()
    )
    return session.scalar(stmt)


def end_login(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id_hash == _hashed(session_id)))
