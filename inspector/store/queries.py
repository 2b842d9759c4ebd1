"""The pipeline's and the CLI's queries, thresholds' too (the review queue's: review.py).

State changes of a frame are compare-and-set updates (``WHERE status = ...``): two
workers handed the same frame can never both move it on, and a result insert that meets
the unique (frame, model version, method) constraint does nothing, so a frame is scored
once by each method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from inspector.store.models import (
    Duplicate,
    Frame,
    Model,
    Result,
    ResultMap,
    Threshold,
    ThresholdChange,
    database_now,
    utcnow,
)

WAITING = ("pending", "queued")  # registered, not yet claimed by a scorer
IN_FLIGHT = ("queued", "processing")
_NO_SYNC = {"synchronize_session": False}


def _insert(session: Session, entity: type | Table) -> Any:
    """An INSERT that understands ON CONFLICT on both supported databases."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(entity)
    if dialect == "sqlite":
        return sqlite.insert(entity)
    raise NotImplementedError(f"unsupported database {dialect!r}")


def _insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> tuple[Any, list | None]:
    """An INSERT of many rows (each with the same keys) and its parameters, to execute as
    ``session.execute(statement, parameters)``; ON CONFLICT and RETURNING may be added.

    On PostgreSQL one statement over one array per column (``INSERT ... SELECT FROM unnest``),
    the same text whatever the row count: the multi-row VALUES SQLAlchemy writes otherwise
    (for RETURNING) has parameters psycopg parses anew each time, 0.05 ms of the client's CPU
    a row, most of the watcher's in a burst; over arrays 0.02. Elsewhere an executemany. For
    rows of small values: the maps' (7 KB each) cost the server more as arrays than in an
    executemany.
    """
    insert = _insert(session, table)
    if session.get_bind().dialect.name != "postgresql":
        return insert, list(rows)
    names = list(rows[0])
    arrays = [
        bindparam(f"{name}_array", [row[name] for row in rows], type_=ARRAY(table.c[name].type))
        for name in names
    ]
    values = func.unnest(*arrays).table_valued(*names).render_derived()
    return insert.from_select(names, select(*(values.c[name] for name in names))), None


# --- frames -------------------------------------------------------------------------------


def insert_frames(session: Session, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Register frames (content_hash, path, source, size_bytes, landed_at) in one statement.

    Returns the new frame ids by path; a row whose content is already known (a duplicate,
    also of an earlier row of the same call) is skipped.
    """
    if not rows:
        return {}
    now = utcnow()
    table = Frame.__table__
    extra = {"status": "pending", "attempts": 0, "registered_at": now, "updated_at": now}
    stmt, parameters = _insert_rows(session, table, [{**r, **extra} for r in rows])
    stmt = stmt.on_conflict_do_nothing(index_elements=[table.c.content_hash]).returning(
        table.c.path, table.c.id
    )
    return {path: frame_id for path, frame_id in session.execute(stmt, parameters)}


def frames_by_hash(session: Session, hashes: Iterable[str], chunk: int = 1000) -> dict[str, Frame]:
    """The frames of these contents, by content hash (a few queries, not one per frame)."""
    hashes = sorted(set(hashes))
    found: dict[str, Frame] = {}
    for start in range(0, len(hashes), chunk):
        stmt = select(Frame).where(Frame.content_hash.in_(hashes[start : start + chunk]))
        found.update((frame.content_hash, frame) for frame in session.execute(stmt).scalars())
    return found


def frames_by_id(session: Session, ids: Iterable[int]) -> list[Frame]:
    return list(session.execute(select(Frame).where(Frame.id.in_(list(ids))).order_by(Frame.id)).scalars())


def database_time(session: Session) -> datetime:
    """Now by the database's clock (naive UTC): what claims and queue times are measured against."""
    return session.execute(select(database_now())).scalar_one()


def _orphaned(queued_before: datetime, lease_before: datetime) -> ColumnElement[bool]:
    """In flight with nobody at work on it: queued before ``queued_before`` (its message lost, it
    seems) or claimed by a worker that stopped renewing its claim before ``lease_before``."""
    return ((Frame.status == "queued") & (Frame.updated_at < queued_before)) | (
        (Frame.status == "processing") & (Frame.updated_at < lease_before)
    )


def queue_waiting(session: Session, queued_before: datetime, lease_before: datetime) -> list[int]:
    """Queue frames that are pending or orphaned in flight (see ``_orphaned``); stamp the time."""
    stmt = (
        update(Frame)
        .where(or_(Frame.status == "pending", _orphaned(queued_before, lease_before)))
        .values(status="queued", updated_at=database_now())
        .returning(Frame.id)
        .execution_options(**_NO_SYNC)
    )
    return sorted(session.execute(stmt).scalars())


def claim_frames(
    session: Session, ids: Sequence[int], lease_before: datetime, claimant: str | None = None
) -> dict[int, int]:
    """Take frames for scoring: waiting ones, ones this claimant held before (a redelivery of
    its message), or claimed ones whose worker stopped renewing its claim before lease_before.
    Returns each claimed frame's attempts, this one included, in id order."""
    takeover = (Frame.status == "processing") & (Frame.updated_at < lease_before)
    if claimant is not None:
        takeover = takeover | ((Frame.status == "processing") & (Frame.claimed_by == claimant))
    stmt = (
        update(Frame)
        .where(Frame.id.in_(ids), or_(Frame.status.in_(WAITING), takeover))
        .values(
            status="processing", claimed_by=claimant, attempts=Frame.attempts + 1, updated_at=database_now()
        )
        .returning(Frame.id, Frame.attempts)
        .execution_options(**_NO_SYNC)
    )
    return dict(sorted((row.id, row.attempts) for row in session.execute(stmt)))


def renew_claims(session: Session, ids: Sequence[int], claimant: str) -> int:
    """A worker at work on its claimed frames says so (their lease starts again); returns how many
    it still holds."""
    stmt = (
        update(Frame)
        .where(Frame.id.in_(ids), Frame.status == "processing", Frame.claimed_by == claimant)
        .values(updated_at=database_now())
        .execution_options(**_NO_SYNC)
    )
    return session.execute(stmt).rowcount


def claim_next(
    session: Session, limit: int, fill: int = 1, gather_before: datetime | None = None
) -> list[int]:
    """Take the oldest waiting frames never tried before (pending or queued), up to limit: the
    embedded scorers' pull, so they take frames soon after they are registered. The claim is a
    compare-and-set on the status, so two scorers never take the same frame. It counts an
    attempt: should the scorer die holding them, they are suspects (``claim_suspect``).

    Fewer than ``fill`` waiting frames, all registered after ``gather_before``, are left to
    gather (none is taken): a forward pass over a handful of frames costs the model up to twice
    the CPU a frame of a full one, so a scorer waits a moment for more. For the same reason a
    gathering claim of more takes a multiple of ``fill`` (whole forward passes); the rest is
    the oldest at the next claim.
    """
    waiting = session.execute(
        select(Frame.id, Frame.registered_at)
        .where(Frame.status.in_(WAITING), Frame.attempts == 0)
        .order_by(Frame.id)
        .limit(limit)
    ).all()
    if not waiting:
        return []
    if (
        len(waiting) < fill
        and gather_before is not None
        and min(r.registered_at for r in waiting) > gather_before
    ):
        return []
    if gather_before is not None and len(waiting) > fill:
        waiting = waiting[: len(waiting) // fill * fill]
    stmt = (
        update(Frame)
        .where(Frame.id.in_([row.id for row in waiting]), Frame.status.in_(WAITING))
        .values(status="processing", claimed_by=None, attempts=Frame.attempts + 1, updated_at=database_now())
        .returning(Frame.id)
        .execution_options(**_NO_SYNC)
    )
    return sorted(session.execute(stmt).scalars())


def _suspects(max_attempts: int) -> ColumnElement[bool]:
    """Waiting frames whose scorer died holding them, not yet given up on."""
    return Frame.status.in_(WAITING) & (Frame.attempts > 0) & (Frame.attempts < max_attempts)


def has_suspects(session: Session, max_attempts: int) -> bool:
    return session.scalar(select(Frame.id).where(_suspects(max_attempts)).limit(1)) is not None


def claim_suspect(session: Session, max_attempts: int, claimant: str) -> int | None:
    """Take the oldest suspect for a scorer of its own, named ``claimant``. No attempt is counted
    here: its death, seen by the process that started it, is what counts (``blame``)."""
    oldest = select(Frame.id).where(_suspects(max_attempts)).order_by(Frame.id).limit(1)
    stmt = (
        update(Frame)
        .where(Frame.id == oldest.scalar_subquery(), Frame.status.in_(WAITING))
        .values(status="processing", claimed_by=claimant, updated_at=database_now())
        .returning(Frame.id)
        .execution_options(**_NO_SYNC)
    )
    return session.scalar(stmt)


def claimed_by(session: Session, claimant: str) -> list[Frame]:
    stmt = select(Frame).where(Frame.status == "processing", Frame.claimed_by == claimant)
    return list(session.scalars(stmt.order_by(Frame.id)))


def count_attempts(session: Session, ids: Sequence[int], change: int) -> None:
    """Add ``change`` to the attempts of claimed frames: a worker that resumes a batch counts an
    attempt only for the frame it is about to score."""
    session.execute(
        update(Frame)
        .where(Frame.id.in_(ids), Frame.status == "processing")
        .values(attempts=Frame.attempts + change)
        .execution_options(**_NO_SYNC)
    )


def release_frames(session: Session, ids: Sequence[int], counted: bool = True) -> None:
    """Hand claimed frames back (a transient error): the retry may claim them at once. The
    attempt their claim ``counted`` is taken back."""
    session.execute(
        update(Frame)
        .where(Frame.id.in_(ids), Frame.status == "processing")
        .values(status="queued", claimed_by=None, attempts=Frame.attempts - int(counted))
        .execution_options(**_NO_SYNC)
    )


def forget_frame(session: Session, frame_id: int) -> bool:
    """Unregister a claimed frame whose file is still being written (it could not be read yet):
    the watcher registers the file again, with its final content, once it has changed or held
    still. False if the frame is no longer claimed (someone else finished it)."""
    stmt = delete(Frame).where(Frame.id == frame_id, Frame.status == "processing")
    return session.execute(stmt.execution_options(**_NO_SYNC)).rowcount == 1


def finish_frames(
    session: Session, status: str, stored_paths: dict[int, str | None], error: str | None = None
) -> list[int]:
    """Close in-flight frames as done or quarantined, each with its stored path, in one statement.

    Returns the ids this call closed; a frame someone else already closed is left alone.
    """
    if not stored_paths:
        return []
    stmt = (
        update(Frame)
        .where(Frame.id.in_(list(stored_paths)), Frame.status == "processing")
        .values(
            status=status,
            stored_path=case(stored_paths, value=Frame.id, else_=None),
            error=error,
            updated_at=database_now(),
        )
        .returning(Frame.id)
        .execution_options(**_NO_SYNC)
    )
    return sorted(session.execute(stmt).scalars())


def finish_frame(
    session: Session, frame_id: int, status: str, stored_path: str | None, error: str | None = None
) -> bool:
    """Close an in-flight frame as done or quarantined; False if someone else already did."""
    return finish_frames(session, status, {frame_id: stored_path}, error) == [frame_id]


def gave_up_note(max_attempts: int) -> str:
    """Why a frame that lost its worker max_attempts times was quarantined."""
    return f"no result after {max_attempts} attempts (the worker died or timed out each time)"


def give_up_frames(
    session: Session, queued_before: datetime, lease_before: datetime, max_attempts: int
) -> list[Frame]:
    """Quarantine orphaned frames (see ``_orphaned``) that lost their worker max_attempts times
    (a poison frame)."""
    stmt = (
        update(Frame)
        .where(_orphaned(queued_before, lease_before), Frame.attempts >= max_attempts)
        .values(
            status="quarantined",
            error=gave_up_note(max_attempts),
            updated_at=database_now(),
        )
        .returning(Frame.id)
        .execution_options(**_NO_SYNC)
    )
    return frames_by_id(session, session.execute(stmt).scalars().all())


def record_duplicates(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Files (frame_id, path, stored_path) moved aside as duplicates of a registered frame."""
    if rows:
        session.execute(Duplicate.__table__.insert(), [{"seen_at": utcnow(), **row} for row in rows])


def quarantined_frames(
    session: Session, since: datetime, source: str | None = None, limit: int | None = None
) -> list[Frame]:
    """Frames quarantined since a time (by their last change), oldest first."""
    stmt = select(Frame).where(Frame.status == "quarantined", Frame.updated_at >= since)
    if source is not None:
        stmt = stmt.where(Frame.source == source)
    return list(session.scalars(stmt.order_by(Frame.updated_at, Frame.id).limit(limit)))


def take_back(session: Session, frame_id: int, claimant: str) -> bool:
    """Claim a quarantined frame for ``claimant`` (a retry), its attempts, error and stored path
    forgotten: while its file is put back where it landed, the watcher leaves the file alone (a
    quarantined frame's file would go back to quarantine) and no scorer takes the frame (one
    would find no file yet). False if it is no longer quarantined."""
    stmt = (
        update(Frame)
        .where(Frame.id == frame_id, Frame.status == "quarantined")
        .values(
            status="processing",
            attempts=0,
            error=None,
            stored_path=None,
            claimed_by=claimant,
            updated_at=database_now(),
        )
        .execution_options(**_NO_SYNC)
    )
    return session.execute(stmt).rowcount == 1


def hand_back(session: Session, frame_id: int, claimant: str) -> bool:
    """Make a frame ``claimant`` took back pending (its file is back): the watcher queues it at its
    next recover. False if the claim lapsed meanwhile and the frame went on without it."""
    stmt = (
        update(Frame)
        .where(Frame.id == frame_id, Frame.status == "processing", Frame.claimed_by == claimant)
        .values(status="pending", claimed_by=None, updated_at=database_now())
        .execution_options(**_NO_SYNC)
    )
    return session.execute(stmt).rowcount == 1


def set_frame_path(session: Session, frame_id: int, path: str) -> None:
    stmt = update(Frame).where(Frame.id == frame_id).values(path=path, updated_at=database_now())
    session.execute(stmt.execution_options(**_NO_SYNC))


def set_stored_path(session: Session, frame_id: int, stored_path: str | None) -> None:
    """Record where a finished frame's file lies; None while it is still where it landed."""
    session.execute(
        update(Frame)
        .where(Frame.id == frame_id)
        .values(stored_path=stored_path)
        .execution_options(**_NO_SYNC)
    )


# --- models and results ---------------------------------------------------------------------


def ensure_model(
    session: Session,
    *,
    version: str,
    method: str,
    path: str,
    default_threshold: float,
    config: dict[str, Any],
    update_path: bool = False,
) -> None:
    """Register a checkpoint scoring with a method, with that method's default threshold (once);
    with ``update_path``, a registered one's file is this path from now on."""
    insert = _insert(session, Model).values(
        version=version,
        method=method,
        path=path,
        default_threshold=default_threshold,
        config=config,
        created_at=utcnow(),
    )
    keys = [Model.version, Model.method]
    if update_path:
        session.execute(insert.on_conflict_do_update(index_elements=keys, set_={"path": path}))
    else:
        session.execute(insert.on_conflict_do_nothing(index_elements=keys))


def get_model(session: Session, version: str, method: str) -> Model | None:
    stmt = select(Model).where(Model.version == version, Model.method == method)
    return session.execute(stmt).scalar_one_or_none()


def models_of(session: Session, version: str) -> list[Model]:
    """A checkpoint's registrations, one per method it scored with, oldest first."""
    stmt = select(Model).where(Model.version == version).order_by(Model.created_at, Model.id)
    return list(session.execute(stmt).scalars())


def list_models(session: Session) -> list[Model]:
    return list(session.execute(select(Model).order_by(Model.created_at, Model.id)).scalars())


def insert_results(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Store results and their maps, skipping frames that already have one from that model and method.

    A row may carry ``maps``: {kind: PNG bytes}. Two statements, whatever the batch size;
    returns how many results were stored.
    """
    if not rows:
        return 0
    now = utcnow()
    table = Result.__table__
    results = [{"created_at": now, **{k: v for k, v in row.items() if k != "maps"}} for row in rows]
    stmt, parameters = _insert_rows(session, table, results)
    stmt = stmt.on_conflict_do_nothing(
        index_elements=[table.c.frame_id, table.c.model_version, table.c.method]
    ).returning(table.c.frame_id, table.c.model_version, table.c.method, table.c.id)
    returned = session.execute(stmt, parameters).all()
    stored = {(frame_id, version, method): result_id for frame_id, version, method, result_id in returned}
    maps = [
        {"result_id": stored[key], "kind": kind, "png": png}
        for row in rows
        if (key := (row["frame_id"], row["model_version"], row["method"])) in stored
        for kind, png in row.get("maps", {}).items()
    ]
    if maps:
        session.execute(ResultMap.__table__.insert(), maps)
    return len(stored)


# --- thresholds (their rules: pipeline/thresholds.py) -----------------------------------------


def default_threshold(session: Session, model_version: str, method: str) -> float | None:
    """The default threshold registered with the checkpoint for this method."""
    stmt = select(Model.default_threshold).where(Model.version == model_version, Model.method == method)
    return session.scalar(stmt)


def threshold_overrides(
    session: Session, model_version: str, method: str, sources: Iterable[str]
) -> dict[str, float]:
    """The sources' own thresholds for this model and method, where they have one."""
    rows = session.execute(
        select(Threshold.source, Threshold.value).where(
            Threshold.model_version == model_version,
            Threshold.method == method,
            Threshold.source.in_(set(sources)),
        )
    )
    return {source: value for source, value in rows}


def record_threshold(
    session: Session,
    source: str,
    model_version: str,
    method: str,
    old: float | None,
    value: float,
    who: str,
    reason: str | None = None,
) -> ThresholdChange:
    """Set a source's own threshold for a model and method, and record the change (who, old → new)."""
    key = {"source": source, "model_version": model_version, "method": method}
    row = session.scalar(select(Threshold).filter_by(**key))
    if row is None:
        session.add(Threshold(**key, value=value, updated_by=who))
    else:
        row.value, row.updated_by = value, who
    change = ThresholdChange(**key, old_value=old, new_value=value, changed_by=who, reason=reason)
    session.add(change)
    session.flush()
    return change


def rejudge_results(session: Session, source: str, model_version: str, method: str, value: float) -> int:
    """Judge a source's stored results of a model and method again under a new threshold, by the
    rule of pipeline.thresholds.is_anomaly (score above the threshold); returns how many
    verdicts flipped. Each result keeps the threshold its verdict was made against."""
    scope = (
        Result.model_version == model_version,
        Result.method == method,
        Result.frame_id.in_(select(Frame.id).where(Frame.source == source)),
    )
    flipped = session.scalar(
        select(func.count()).select_from(Result).where(*scope, Result.is_anomaly != (Result.score > value))
    )
    statement = (
        update(Result)
        .where(*scope)
        .values(threshold=value, is_anomaly=Result.score > value)
        .execution_options(**_NO_SYNC)
    )
    session.execute(statement)
    return flipped or 0


def list_thresholds(session: Session, model_version: str | None = None) -> list[Threshold]:
    stmt = select(Threshold).order_by(Threshold.model_version, Threshold.method, Threshold.source)
    if model_version is not None:
        stmt = stmt.where(Threshold.model_version == model_version)
    return list(session.execute(stmt).scalars())


def threshold_changes(session: Session, limit: int = 20) -> list[ThresholdChange]:
    """The audit trail, newest first."""
    query = select(ThresholdChange).order_by(ThresholdChange.changed_at.desc(), ThresholdChange.id.desc())
    return list(session.scalars(query.limit(limit)))


# --- report ---------------------------------------------------------------------------------


@dataclass
class ReportRow:
    frame_id: int
    path: str
    source: str
    model_version: str
    method: str
    score: float
    threshold: float
    is_anomaly: bool
    scored_at: datetime
    stored_path: str | None  # its archive (or quarantine) file, relative to data_dir, once moved


REPORT_COLUMNS = (  # a ReportRow's, in its order
    Result.frame_id,
    Frame.path,
    Frame.source,
    Result.model_version,
    Result.method,
    Result.score,
    Result.threshold,
    Result.is_anomaly,
    Result.created_at,
    Frame.stored_path,
)


def _report_filter(
    stmt: Select, since: datetime, flagged: bool, source: str | None, frames_joined: bool = False
) -> Select:
    # The created_at / (is_anomaly, created_at) indexes carry the time range; the join is by key.
    # A candidate's verdicts (shadow) are not the pipeline's: the report leaves them out.
    stmt = stmt.where(Result.created_at >= since, Result.shadow.is_(False))
    if flagged:
        stmt = stmt.where(Result.is_anomaly.is_(True))
    if source is not None:
        if not frames_joined:
            stmt = stmt.join(Frame, Frame.id == Result.frame_id)
        stmt = stmt.where(Frame.source == source)
    return stmt


def report_rows(
    session: Session,
    since: datetime,
    flagged: bool = False,
    source: str | None = None,
    limit: int | None = None,
) -> list[ReportRow]:
    stmt = select(*REPORT_COLUMNS).join(Frame, Frame.id == Result.frame_id)
    stmt = (
        _report_filter(stmt, since, flagged, source, frames_joined=True)
        .order_by(Result.created_at, Result.id)
        .limit(limit)
    )
    return [ReportRow(*row) for row in session.execute(stmt)]


def report_counts(session: Session, since: datetime, source: str | None = None) -> tuple[int, int]:
    """(frames quarantined, files found to be duplicates) since a time."""
    quarantined = (
        select(func.count())
        .select_from(Frame)
        .where(Frame.status == "quarantined", Frame.updated_at >= since)
    )
    duplicates = select(func.count()).select_from(Duplicate).where(Duplicate.seen_at >= since)
    if source is not None:
        quarantined = quarantined.where(Frame.source == source)
        duplicates = duplicates.join(Frame, Frame.id == Duplicate.frame_id).where(Frame.source == source)
    return session.scalar(quarantined) or 0, session.scalar(duplicates) or 0


def report_scores(
    session: Session, since: datetime, flagged: bool = False, source: str | None = None
) -> list[tuple[float, bool]]:
    """(score, is_anomaly) of every matching result: two narrow columns, for the summary."""
    stmt = _report_filter(select(Result.score, Result.is_anomaly), since, flagged, source)
    return [(score, bool(flag)) for score, flag in session.execute(stmt)]
