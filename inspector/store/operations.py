"""The SQL of running the pipeline: heartbeats, backlogs, the alert outbox and retention.

Like ``queries``, state changes are compare-and-set statements, so two dispatchers (or two
prune runs) never both take the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, case, delete, exists, func, literal, or_, select, true, update
from sqlalchemy.orm import Session

from inspector.store.models import (
    AlertOutbox,
    AlertState,
    Frame,
    Heartbeat,
    Result,
    ResultMap,
    Review,
    database_now,
    utcnow,
)
from inspector.store.queries import IN_FLIGHT, REPORT_COLUMNS, WAITING, ReportRow, _insert

_NO_SYNC = {"synchronize_session": False}
UNSCORED = tuple(dict.fromkeys(WAITING + IN_FLIGHT))  # pending, queued, processing

# --- heartbeats -----------------------------------------------------------------------------


def beat(
    session: Session, *, kind: str, name: str, host: str, pid: int, doing: str, start: bool = False
) -> None:
    """Record that a process lives (``start``: it just started, under this host and pid), by the
    database's clock: processes on other hosts judge its age by it (health.py)."""
    now = database_now()
    values = {"name": name, "beat_at": now, "doing": doing, "stopped_at": None}
    if start:
        values["started_at"] = now
    stmt = _insert(session, Heartbeat).values(
        {"kind": kind, "host": host, "pid": pid, "started_at": now} | values
    )
    session.execute(stmt.on_conflict_do_update(index_elements=["kind", "host", "pid"], set_=values))


def stopped(session: Session, *, kind: str, host: str, pid: int, doing: str) -> None:
    """A process that ends cleanly says so: it is then stopped, not down."""
    now = database_now()
    session.execute(
        update(Heartbeat)
        .where(Heartbeat.kind == kind, Heartbeat.host == host, Heartbeat.pid == pid)
        .values(beat_at=now, stopped_at=now, doing=doing)
        .execution_options(**_NO_SYNC)
    )


def forget_heartbeats(session: Session, before: datetime) -> int:
    """Drop the rows of processes silent since ``before`` (stopped or dead long ago)."""
    return session.execute(delete(Heartbeat).where(Heartbeat.beat_at < before)).rowcount or 0


def heartbeats(session: Session) -> list[Heartbeat]:
    return list(session.scalars(select(Heartbeat).order_by(Heartbeat.kind, Heartbeat.name, Heartbeat.id)))


# --- backlogs -------------------------------------------------------------------------------


def unscored(session: Session) -> tuple[dict[str, int], datetime | None]:
    """Frames not yet scored by status, and when the oldest of them was registered."""
    rows = session.execute(
        select(Frame.status, func.count(), func.min(Frame.registered_at))
        .where(Frame.status.in_(UNSCORED))
        .group_by(Frame.status)
    ).all()
    counts = {status: 0 for status in UNSCORED} | {status: n for status, n, _ in rows}
    return counts, min((oldest for _, _, oldest in rows), default=None)


def undelivered(session: Session) -> tuple[dict[str, int], datetime | None, int]:
    """Undelivered alerts by channel, when the oldest was queued, and how many failed before."""
    rows = session.execute(
        select(
            AlertOutbox.channel,
            func.count(),
            func.min(AlertOutbox.created_at),
            func.count().filter(AlertOutbox.attempts > 0),
        )
        .where(AlertOutbox.sent_at.is_(None))
        .group_by(AlertOutbox.channel)
    ).all()
    oldest = min((row[2] for row in rows), default=None)
    return {row[0]: row[1] for row in rows}, oldest, sum(row[3] for row in rows)


# --- the alert outbox -----------------------------------------------------------------------


def queue_alerts(
    session: Session, channels: Sequence[str], model_version: str, method: str, frame_ids: Sequence[int]
) -> None:
    """Queue the flagged results of these frames under this model (version and method) for each
    channel, in the caller's transaction; a result already queued for a channel is not queued again."""
    now = utcnow()
    for channel in channels:
        flagged = (
            select(Result.id, literal(channel, String), Frame.source, literal(now, DateTime), literal(0))
            .join(Frame, Frame.id == Result.frame_id)
            .where(
                Result.frame_id.in_(frame_ids),
                Result.model_version == model_version,
                Result.method == method,
                Result.is_anomaly.is_(True),
                Result.shadow.is_(False),
            )
        )
        columns = ["result_id", "channel", "source", "created_at", "attempts"]
        stmt = _insert(session, AlertOutbox).from_select(columns, flagged)
        session.execute(stmt.on_conflict_do_nothing(index_elements=["result_id", "channel"]))


def pending_groups(session: Session, channels: Sequence[str]) -> list[tuple[str, str]]:
    """(channel, source) pairs with undelivered alerts."""
    stmt = (
        select(AlertOutbox.channel, AlertOutbox.source)
        .where(AlertOutbox.sent_at.is_(None), AlertOutbox.channel.in_(channels))
        .distinct()
        .order_by(AlertOutbox.channel, AlertOutbox.source)
    )
    return [(channel, source) for channel, source in session.execute(stmt)]


def lease_group(
    session: Session, channel: str, source: str, owner: str, until: datetime, cooldown_start: datetime
) -> bool:
    """Take a (channel, source) for one delivery, unless another dispatcher holds it, it is backing
    off after a failure, or it sent a message after ``cooldown_start`` (its cooldown)."""
    session.execute(
        _insert(session, AlertState)
        .values(channel=channel, source=source, failures=0)
        .on_conflict_do_nothing(index_elements=["channel", "source"])
    )
    now = utcnow()
    stmt = (
        update(AlertState)
        .where(
            AlertState.channel == channel,
            AlertState.source == source,
            or_(
                AlertState.lease_until.is_(None),
                AlertState.lease_until < now,
                AlertState.lease_owner == owner,
            ),
            or_(AlertState.retry_at.is_(None), AlertState.retry_at <= now),
            or_(AlertState.last_sent_at.is_(None), AlertState.last_sent_at <= cooldown_start),
        )
        .values(lease_owner=owner, lease_until=until)
        .returning(AlertState.channel)
        .execution_options(**_NO_SYNC)
    )
    return session.execute(stmt).first() is not None


@dataclass
class PendingAlert:
    outbox_id: int
    result_id: int
    frame_id: int
    score: float
    threshold: float
    model_version: str
    method: str
    landed_at: datetime
    scored_at: datetime
    pruned_at: datetime | None


def pending_alerts(session: Session, channel: str, source: str) -> list[PendingAlert]:
    """The undelivered alerts of a (channel, source), highest score first."""
    stmt = (
        select(
            AlertOutbox.id,
            Result.id,
            Result.frame_id,
            Result.score,
            Result.threshold,
            Result.model_version,
            Result.method,
            Frame.landed_at,
            Result.created_at,
            Frame.pruned_at,
        )
        .join(Result, Result.id == AlertOutbox.result_id)
        .join(Frame, Frame.id == Result.frame_id)
        .where(AlertOutbox.channel == channel, AlertOutbox.source == source, AlertOutbox.sent_at.is_(None))
        .order_by(Result.score.desc(), AlertOutbox.id)
    )
    return [PendingAlert(*row) for row in session.execute(stmt)]


def map_kinds_of(session: Session, result_ids: Sequence[int]) -> dict[int, list[str]]:
    kinds: dict[int, list[str]] = {}
    rows = session.execute(
        select(ResultMap.result_id, ResultMap.kind).where(ResultMap.result_id.in_(list(result_ids)))
    )
    for result_id, kind in rows:
        kinds.setdefault(result_id, []).append(kind)
    return kinds


def delivered(
    session: Session, channel: str, source: str, owner: str, ids: Sequence[int], delivery: str
) -> None:
    """Mark alerts sent in one message, start the cooldown and hand the (channel, source) back."""
    now = utcnow()
    session.execute(
        update(AlertOutbox)
        .where(AlertOutbox.id.in_(list(ids)), AlertOutbox.sent_at.is_(None))
        .values(sent_at=now, delivery=delivery, attempts=AlertOutbox.attempts + 1)
        .execution_options(**_NO_SYNC)
    )
    session.execute(
        update(AlertState)
        .where(AlertState.channel == channel, AlertState.source == source, AlertState.lease_owner == owner)
        .values(last_sent_at=now, failures=0, retry_at=None, lease_owner=None, lease_until=None)
        .execution_options(**_NO_SYNC)
    )


def release_group(session: Session, channel: str, source: str, owner: str) -> None:
    session.execute(
        update(AlertState)
        .where(AlertState.channel == channel, AlertState.source == source, AlertState.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(**_NO_SYNC)
    )


def delivery_failed(
    session: Session,
    channel: str,
    source: str,
    owner: str,
    ids: Sequence[int],
    error: str,
    backoff: Any,
) -> datetime:
    """Count a failed delivery on its alerts and back the (channel, source) off: ``backoff(failures)``
    seconds. Returns when it may be tried again."""
    now = utcnow()
    session.execute(
        update(AlertOutbox)
        .where(AlertOutbox.id.in_(list(ids)), AlertOutbox.sent_at.is_(None))
        .values(attempts=AlertOutbox.attempts + 1, last_error=error[:2000])
        .execution_options(**_NO_SYNC)
    )
    failures = (
        session.scalar(
            select(AlertState.failures).where(AlertState.channel == channel, AlertState.source == source)
        )
        or 0
    ) + 1
    retry_at = now + timedelta(seconds=backoff(failures))
    session.execute(
        update(AlertState)
        .where(AlertState.channel == channel, AlertState.source == source, AlertState.lease_owner == owner)
        .values(failures=failures, retry_at=retry_at, lease_owner=None, lease_until=None)
        .execution_options(**_NO_SYNC)
    )
    return retry_at


def forget_delivered(session: Session, before: datetime) -> int:
    return (
        session.execute(
            delete(AlertOutbox).where(AlertOutbox.sent_at.is_not(None), AlertOutbox.sent_at < before)
        ).rowcount
        or 0
    )


# --- retention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepRule:
    """Frames whose file and maps stay whatever their age: flagged, reviewed, a sample of the rest."""

    flagged: bool = True
    reviewed: bool = True
    sample_below: str = ""  # frames whose content hash sorts below this prefix are the kept sample

    def kept(self) -> Any:
        """A SQL condition on frames: true for frames this rule keeps.

        Flagged and reviewed frames are sets read once (IN a subquery), not a lookup per frame: a
        per-frame EXISTS on results was planned by SQLite through the is_anomaly index, a scan of
        every flag for every frame (minutes at 100 000 frames with a third of them flagged).
        """
        conditions = []
        if self.flagged:
            conditions.append(Frame.id.in_(select(Result.frame_id).where(Result.is_anomaly.is_(True))))
        if self.reviewed:
            conditions.append(Frame.id.in_(select(Review.frame_id)))
        if self.sample_below:
            conditions.append(func.substr(Frame.content_hash, 1, len(self.sample_below)) < self.sample_below)
        return or_(*conditions) if conditions else ~true()


@dataclass
class PruneCandidate:
    frame_id: int
    landed_at: datetime
    file_bytes: int  # its archive file (0 when it has none in the archive)
    map_bytes: int


def _map_size(session: Session) -> Any:
    """The bytes each stored map takes: on PostgreSQL as stored (compressed by LZ4 since migration
    0013; read from the value's header, nothing decompressed), else its length."""
    if session.get_bind().dialect.name == "postgresql":
        return func.pg_column_size(ResultMap.png)
    return func.length(ResultMap.png)


def _map_bytes_by_frame(session: Session) -> Any:
    return (
        select(Result.frame_id.label("frame_id"), func.sum(_map_size(session)).label("bytes"))
        .join(ResultMap, ResultMap.result_id == Result.id)
        .group_by(Result.frame_id)
        .subquery()
    )


def _archived() -> Any:
    return Frame.stored_path.like("archive/%")


def prune_candidates(session: Session, keep: KeepRule, settled_before: datetime) -> list[PruneCandidate]:
    """Frames the policy may prune, oldest first: scored (done) before ``settled_before``, not yet
    pruned, not kept, with the bytes pruning them would free."""
    maps = _map_bytes_by_frame(session)
    stmt = (
        select(
            Frame.id,
            Frame.landed_at,
            case((_archived(), Frame.size_bytes), else_=0),
            func.coalesce(maps.c.bytes, 0),
        )
        .outerjoin(maps, maps.c.frame_id == Frame.id)
        .where(
            Frame.status == "done",
            Frame.pruned_at.is_(None),
            Frame.updated_at < settled_before,
            ~keep.kept(),
        )
        .order_by(Frame.landed_at, Frame.id)
    )
    return [PruneCandidate(*row) for row in session.execute(stmt)]


def stored_bytes(session: Session) -> tuple[int, int]:
    """Bytes held now: archive files of unpruned frames, and every stored map."""
    files = session.scalar(
        select(func.coalesce(func.sum(Frame.size_bytes), 0)).where(Frame.pruned_at.is_(None), _archived())
    )
    maps = session.scalar(select(func.coalesce(func.sum(_map_size(session)), 0)))
    return int(files or 0), int(maps or 0)


def mark_pruned(session: Session, ids: Sequence[int], keep: KeepRule) -> list[tuple[int, str | None]]:
    """Say these frames are pruned and delete their maps, in the caller's transaction; a frame that
    became kept meanwhile (an operator labelled it) or was pruned by another run is left alone.
    Returns (frame id, archive path) of the frames marked: their files go next."""
    stmt = (
        update(Frame)
        .where(Frame.id.in_(list(ids)), Frame.pruned_at.is_(None), ~keep.kept())
        .values(pruned_at=utcnow())
        .returning(Frame.id, Frame.stored_path)
        .execution_options(**_NO_SYNC)
    )
    marked = sorted((frame_id, path) for frame_id, path in session.execute(stmt))
    if marked:
        results = select(Result.id).where(Result.frame_id.in_([frame_id for frame_id, _ in marked]))
        session.execute(
            delete(ResultMap).where(ResultMap.result_id.in_(results)).execution_options(**_NO_SYNC)
        )
    return [(frame_id, path) for frame_id, path in marked]


def files_to_remove(session: Session) -> list[tuple[int, str]]:
    """Pruned frames whose archive file may still be on disk (their stored path is still set)."""
    stmt = select(Frame.id, Frame.stored_path).where(
        Frame.pruned_at.is_not(None), Frame.stored_path.is_not(None)
    )
    return [(frame_id, path) for frame_id, path in session.execute(stmt)]


def files_removed(session: Session, ids: Sequence[int]) -> None:
    """Forget the stored path of pruned frames whose file is gone."""
    session.execute(
        update(Frame)
        .where(Frame.id.in_(list(ids)), Frame.pruned_at.is_not(None))
        .values(stored_path=None)
        .execution_options(**_NO_SYNC)
    )


def count_kept(session: Session, keep: KeepRule) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Frame)
            .where(Frame.status == "done", Frame.pruned_at.is_(None), keep.kept())
        )
        or 0
    )


# --- the API's results ----------------------------------------------------------------------


@dataclass(frozen=True)
class ResultQuery:
    """Filters of the API's result list; None means no restriction."""

    source: str | None = None
    since: datetime | None = None  # scored at or after, UTC
    until: datetime | None = None  # scored before
    flagged: bool | None = None
    reviewed: bool | None = None
    score_min: float | None = None
    score_max: float | None = None
    model_version: str | None = None
    method: str | None = None
    shadow: bool | None = False  # True: only candidates' verdicts (scored beside a live model); None: all


@dataclass
class ResultRow(ReportRow):
    """A result as the API lists it: the report's row (its stored file included), with its id and
    its frame's landing and pruning."""

    id: int
    landed_at: datetime
    pruned_at: datetime | None
    shadow: bool


def _result_select() -> Any:
    columns = (Result.id, Frame.landed_at, Frame.pruned_at, Result.shadow)
    return select(*REPORT_COLUMNS, *columns).join(Frame, Frame.id == Result.frame_id)


def result_rows(session: Session, query: ResultQuery, before_id: int | None, limit: int) -> list[ResultRow]:
    """Matching results, newest (highest id) first, below ``before_id``: keyset paging on the key."""
    stmt = _result_select()
    conditions = [
        Frame.source == query.source if query.source is not None else None,
        Result.created_at >= query.since if query.since is not None else None,
        Result.created_at < query.until if query.until is not None else None,
        Result.is_anomaly.is_(query.flagged) if query.flagged is not None else None,
        Result.score >= query.score_min if query.score_min is not None else None,
        Result.score <= query.score_max if query.score_max is not None else None,
        Result.model_version == query.model_version if query.model_version is not None else None,
        Result.method == query.method if query.method is not None else None,
        Result.shadow.is_(query.shadow) if query.shadow is not None else None,
        Result.id < before_id if before_id is not None else None,
    ]
    if query.reviewed is not None:
        reviewed = exists().where(Review.frame_id == Result.frame_id)
        conditions.append(reviewed if query.reviewed else ~reviewed)
    stmt = stmt.where(*(c for c in conditions if c is not None)).order_by(Result.id.desc()).limit(limit)
    return [ResultRow(*row) for row in session.execute(stmt)]


def result_row(session: Session, result_id: int) -> ResultRow | None:
    row = session.execute(_result_select().where(Result.id == result_id)).first()
    return None if row is None else ResultRow(*row)


def latest_labels(session: Session, frame_ids: Sequence[int]) -> dict[int, str]:
    """The latest review's label of each of these frames that has one."""
    latest = (
        select(func.max(Review.id))
        .where(Review.frame_id.in_(list(frame_ids)))
        .group_by(Review.frame_id)
        .scalar_subquery()
    )
    rows = session.execute(select(Review.frame_id, Review.label).where(Review.id.in_(latest)))
    return {frame_id: label for frame_id, label in rows}


def reviews_of(session: Session, frame_id: int) -> list[Review]:
    """A frame's reviews, oldest first."""
    return list(session.scalars(select(Review).where(Review.frame_id == frame_id).order_by(Review.id)))
