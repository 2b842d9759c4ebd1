"""The schema: frames, results, models, reviews and thresholds (SQLAlchemy 2.0, no torch).

Invariants the database enforces rather than the code hoping for them:
- a frame is registered once per content (unique content hash);
- a score means something only with the model version *and* the method that made it: a
  model is registered once per (version, method), with that method's default threshold;
- a frame has at most one result per (model version, method);
- a source has at most one threshold per (model version, method), so a method switch can
  never judge scores by a threshold set on another method's scale;
- a flagged result is queued for each alert channel at most once;
- a dashboard login lasts only while its web_sessions row does (logout deletes it);
- a source has at most one live model and one candidate (model_roles), and every change of
  role is recorded (model_changes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

FRAME_STATUSES = ("pending", "queued", "processing", "done", "quarantined")
LABELS = ("anomaly", "normal")
ROLES = ("live", "candidate", "retired")
ALL_SOURCES = "*"  # a model_roles row for every source that has none of its own for that role


# Ids that grow with the frames (frames, results, their maps, reviews, alerts): 64-bit on
# PostgreSQL, as SQLite's INTEGER already is (which must stay INTEGER there to be the rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")
MAX_ID = 2**63 - 1  # the largest id either database can hold: a larger one names no row


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class database_now(FunctionElement[datetime]):  # noqa: N801 - an SQL function, named like one
    """The database's clock (naive UTC), in SQL: what stamps and compares frames' claims and
    their time in the queue. Workers, watchers and the database may run on hosts whose clocks
    disagree; by one host's clock a claim another stamped ten seconds behind has lapsed, and its
    frame is taken away from a worker at work on it, again and again. SQLite serves one host."""

    type = DateTime()
    inherit_cache = True


@compiles(database_now, "postgresql")
def _database_now_postgresql(element: database_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "timezone('UTC', clock_timestamp())"


@compiles(database_now, "sqlite")
def _database_now_sqlite(element: database_now, compiler: SQLCompiler, **kw: Any) -> str:
    # In the text form SQLAlchemy stores SQLite's DATETIME in (microseconds; 'now' has milliseconds).
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Model(Base):
    """A trained checkpoint (by its content version) scoring with one method, as the pipeline used it:
    the scale its results' scores and its thresholds are on."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("version", "method", name="uq_models_version_method"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    default_threshold: Mapped[float]  # the checkpoint's, for this method
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Frame(Base):
    """A file that landed in a watched folder, from registration to archive or quarantine."""

    __tablename__ = "frames"
    __table_args__ = (
        CheckConstraint(f"status IN {FRAME_STATUSES}", name="status"),
        Index("ix_frames_status_updated", "status", "updated_at"),
        Index("ix_frames_source_registered", "source", "registered_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)  # where it landed
    stored_path: Mapped[str | None] = mapped_column(Text)  # archive/quarantine file, relative to data_dir
    source: Mapped[str] = mapped_column(String(128), default="default")
    size_bytes: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    # The delivery (Celery task id) holding the claim: a redelivery of that same message,
    # after its worker died, may take the frames back at once instead of waiting them out.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    landed_at: Mapped[datetime]  # the file's modification time
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Its last change of state, by the database's clock (database_now): claims lapse by it.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=database_now())
    pruned_at: Mapped[datetime | None]  # its archive file and maps were deleted (retention), rows kept

    results: Mapped[list[Result]] = relationship(back_populates="frame")
    reviews: Mapped[list[Review]] = relationship(back_populates="frame", order_by="Review.created_at")


class Duplicate(Base):
    """A file that landed with the content of a frame already registered: moved to
    archive/duplicates, never scored again, counted in the report."""

    __tablename__ = "duplicates"
    __table_args__ = (Index("ix_duplicates_seen", "seen_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frame_id: Mapped[int] = mapped_column(BigId, ForeignKey("frames.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)  # where it landed
    stored_path: Mapped[str] = mapped_column(Text)  # relative to data_dir
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Result(Base):
    """A model's verdict on a frame; its maps are rows of result_maps, written in the same transaction."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("frame_id", "model_version", "method", name="uq_results_frame_model_method"),
        ForeignKeyConstraint(
            ["model_version", "method"], ["models.version", "models.method"], name="fk_results_model_method"
        ),
        Index("ix_results_created", "created_at"),
        Index("ix_results_anomaly_created", "is_anomaly", "created_at"),
        Index("ix_results_anomaly_score", "is_anomaly", "score", "id"),  # the review queue's order
        # A model's scores by frame, read from the index alone (calibration; which models scored).
        Index("ix_results_model_frame_score", "model_version", "method", "frame_id", "score"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frame_id: Mapped[int] = mapped_column(BigId, ForeignKey("frames.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    score: Mapped[float]
    # The frame's mean level before flat-fielding, at this model's frame spec (frames.Prepared):
    # the drift monitor watches it beside the scores. None for results stored before 0012.
    level: Mapped[float | None]
    threshold: Mapped[float]
    is_anomaly: Mapped[bool]
    # Scored by a candidate beside the live model: kept for comparison, never alerted, never queued
    # for review, never counted as the pipeline's verdict.
    shadow: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    frame: Mapped[Frame] = relationship(back_populates="results")


class ResultMap(Base):
    """One map of a result at the model's resolution, as a PNG of uint8 planes (see inspector.maps).

    Stored as data, not as a picture: the dashboard draws the overlay when a person looks,
    so the pipeline writes one small row per map instead of rendering and writing files,
    and a result and its maps are committed (or lost) together.
    """

    __tablename__ = "result_maps"

    result_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("results.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    png: Mapped[bytes] = mapped_column(LargeBinary)


class Review(Base):
    """An operator's label on a frame: the ground truth that calibrates thresholds."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(f"label IN {LABELS}", name="label"),
        Index("ix_reviews_frame_latest", "frame_id", "id", "label"),  # a frame's latest label, index only
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frame_id: Mapped[int] = mapped_column(BigId, ForeignKey("frames.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(16))
    reviewer: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    frame: Mapped[Frame] = relationship(back_populates="reviews")


class Threshold(Base):
    """A per-source threshold overriding the model's default, for one model version and method."""

    __tablename__ = "thresholds"
    __table_args__ = (
        UniqueConstraint("source", "model_version", "method", name="uq_thresholds_source_model_method"),
        ForeignKeyConstraint(
            ["model_version", "method"],
            ["models.version", "models.method"],
            name="fk_thresholds_model_method",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    value: Mapped[float]
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ThresholdChange(Base):
    """Audit trail: who moved which threshold, when, from what to what."""

    __tablename__ = "threshold_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[float | None]
    new_value: Mapped[float]
    changed_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A reviewer's login to the dashboard. The signed cookie carries a random session id, stored
    here only hashed; logging out deletes the row, so the cookie (still signed, still within its
    lifetime) is refused from then on, whoever replays it."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's id
    user: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


# --- the model registry: which model scores which source ---------------------------------------


def _one_per_source(role: str) -> Index:
    """At most one model of this role per source (a partial unique index, on both databases)."""
    where = text(f"role = '{role}'")
    return Index(f"uq_model_roles_{role}", "source", unique=True, sqlite_where=where, postgresql_where=where)


class ModelRole(Base):
    """A model's (version and method) role for a source: ``live`` (its verdicts alert and are
    reviewed), ``candidate`` (scored beside the live one, in shadow) or ``retired`` (kept for a
    rollback). A source without a live row is scored by the configured model (``model_path``);
    source ``*`` stands for every source without a row of its own for that role."""

    __tablename__ = "model_roles"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role"),
        UniqueConstraint("source", "model_version", "method", name="uq_model_roles_source_model_method"),
        ForeignKeyConstraint(
            ["model_version", "method"],
            ["models.version", "models.method"],
            name="fk_model_roles_model_method",
        ),
        _one_per_source("live"),
        _one_per_source("candidate"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelChange(Base):
    """Audit trail of the registry: who gave which model which role for a source, when and why.

    A promotion or rollback names the model live after it and the one live before it
    (``previous``); no model (NULL) there means the configured model (``model_path``).
    """

    __tablename__ = "model_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))  # register | promote | rollback | retire
    model_version: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))  # its role after the change
    previous_version: Mapped[str | None] = mapped_column(String(64))
    previous_method: Mapped[str | None] = mapped_column(String(32))
    changed_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- operations: process heartbeats and the alert outbox --------------------------------------


class Heartbeat(Base):
    """A long-running process (watcher, worker, alert dispatcher) saying it lives and what it does.

    A row whose last beat is old and that never said it stopped is a process that died.
    """

    __tablename__ = "heartbeats"
    __table_args__ = (UniqueConstraint("kind", "host", "pid", name="uq_heartbeats_process"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]
    doing: Mapped[str] = mapped_column(Text, default="")


class AlertOutbox(Base):
    """A flagged result (or a drift found) to tell one channel about, written in the transaction
    that stores the result (or the drift), so none is lost and none is queued twice (unique result,
    or drift event, and channel)."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("result_id", "channel", name="uq_alert_outbox_result_channel"),
        UniqueConstraint("drift_event_id", "channel", name="uq_alert_outbox_drift_event_channel"),
        CheckConstraint("(result_id IS NULL) <> (drift_event_id IS NULL)", name="one_subject"),
        Index("ix_alert_outbox_pending", "sent_at", "channel", "source"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    result_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("results.id", ondelete="CASCADE"))
    drift_event_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("drift_events.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivery: Mapped[str | None] = mapped_column(String(64))  # the message that carried it
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class AlertState(Base):
    """Per channel and source: the last message (cooldown), the back-off after failures, and the
    dispatcher holding it (a lease, so two dispatchers never send the same flags)."""

    __tablename__ = "alert_state"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_sent_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(default=0)
    retry_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]


# --- drift: are a source's frames still what its live model was trained on? ---------------------


# What the drift monitor watches per source (pipeline/drift.py), in words: the latest values, and
# what of the live model's checkpoint they are compared with.
DRIFT_WATCHED = {
    "score": ("scores", "held-out normal frames"),
    "level": ("frame levels (means before flat-fielding)", "training frames"),
}


class DriftState(Base):
    """Per source and quantity watched (its live model's scores, its frames' levels), the drift
    monitor's latest check."""

    __tablename__ = "drift_state"

    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    watched: Mapped[str] = mapped_column(String(16), primary_key=True)  # pipeline/drift.py WATCHED
    model_version: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    frames: Mapped[int]  # values in the window
    statistic: Mapped[float | None]  # the test's (None: not tested; ``note`` says why)
    p_value: Mapped[float | None]
    drifting: Mapped[bool]
    since: Mapped[datetime | None]  # drifting since
    note: Mapped[str] = mapped_column(Text, default="")

    @property
    def values(self) -> str:
        return DRIFT_WATCHED[self.watched][0]

    @property
    def reference(self) -> str:
        return DRIFT_WATCHED[self.watched][1]


class DriftEvent(Base):
    """A source found drifting, in one quantity watched: what its alert says."""

    __tablename__ = "drift_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(128))
    watched: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    statistic: Mapped[float]
    p_value: Mapped[float]
    frames: Mapped[int]
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
