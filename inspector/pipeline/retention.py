"""Retention: delete archive files and stored maps the policy no longer keeps (`inspector prune`).

Frames that were flagged or reviewed keep theirs, and so does a fixed sample of the others
(chosen by content hash, so every run picks the same ones); of the rest, those older than
``retention.max_age_days`` go, then the oldest while the archive and maps together exceed
``retention.max_gb``. Frame and result rows stay: reports, calibration and the pages keep
working, and a pruned frame's page says its image and maps were pruned.

The database goes first. One transaction marks a batch of frames pruned (``pruned_at``) and
deletes their maps; only then are their files unlinked, and their stored paths cleared. A
crash between the two leaves files that the database already calls pruned: the next run
unlinks them (every pruned frame with a stored path left). The other order could leave a frame
pointing at a file that is gone without saying so. Every step is idempotent.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from inspector import metrics
from inspector.config import RetentionSettings, Settings
from inspector.store import operations
from inspector.store.db import session_scope
from inspector.store.models import utcnow
from inspector.store.operations import KeepRule, PruneCandidate

log = logging.getLogger(__name__)

BATCH = 500  # frames marked per transaction
SETTLE = timedelta(minutes=10)  # a frame scored this recently is left alone (its file may still be moving)
DUPLICATES = "archive/duplicates"


def keep_rule(policy: RetentionSettings) -> KeepRule:
    """The SQL form of the keep rules; the sample is the frames whose hash starts below a prefix."""
    fraction = min(max(policy.keep_normal_fraction, 0.0), 1.0)
    sample = f"{round(fraction * 0x10000):04x}" if fraction < 1 else "g"  # "g" sorts after every hex digit
    return KeepRule(policy.keep_flagged, policy.keep_reviewed, sample if fraction > 0 else "")


@dataclass
class Plan:
    """What the policy prunes now, and why."""

    frames: list[PruneCandidate] = field(default_factory=list)
    by_age: int = 0
    by_size: int = 0
    kept: int = 0  # frames the keep rules protect
    stored_files: int = 0  # bytes held before pruning
    stored_maps: int = 0
    duplicates: list[Path] = field(default_factory=list)  # old copies in archive/duplicates
    duplicate_bytes: int = 0

    @property
    def file_bytes(self) -> int:
        return sum(c.file_bytes for c in self.frames)

    @property
    def map_bytes(self) -> int:
        return sum(c.map_bytes for c in self.frames)


def plan(settings: Settings) -> Plan:
    """Choose what to prune: never a kept frame, the too old, then the oldest beyond the size limit."""
    policy, now = settings.retention, utcnow()
    keep = keep_rule(policy)
    result = Plan()
    with session_scope(settings.db_url) as session:
        result.stored_files, result.stored_maps = operations.stored_bytes(session)
        if not (policy.max_age_days > 0 or policy.max_gb > 0):
            return result  # no limit set: nothing is ever pruned
        candidates = operations.prune_candidates(session, keep, now - SETTLE)
        result.kept = operations.count_kept(session, keep)
    cutoff = now - timedelta(days=policy.max_age_days) if policy.max_age_days > 0 else None
    remaining = result.stored_files + result.stored_maps
    budget = policy.max_gb * 1e9 if policy.max_gb > 0 else None
    for candidate in candidates:  # oldest first
        if cutoff is not None and candidate.landed_at < cutoff:
            result.by_age += 1
        elif budget is not None and remaining > budget:
            result.by_size += 1
        else:
            continue
        result.frames.append(candidate)
        remaining -= candidate.file_bytes + candidate.map_bytes
    if cutoff is not None:
        result.duplicates = list(_old_duplicates(settings.data_path / DUPLICATES, cutoff.timestamp()))
        result.duplicate_bytes = sum(path.stat().st_size for path in result.duplicates)
    return result


def _old_duplicates(folder: Path, before: float) -> Iterator[Path]:
    """Copies the watcher set aside as duplicates of a known frame, older than ``before`` (epoch)."""
    if not folder.is_dir():
        return
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < before:
            yield Path(entry.path)


@dataclass
class Pruned:
    frames: int = 0
    files: int = 0  # archive files unlinked (or found gone)
    duplicates: int = 0
    alerts: int = 0  # delivered alerts forgotten
    seconds: float = 0.0


def apply(settings: Settings, chosen: Plan) -> Pruned:
    """Prune the planned frames batch by batch, database first (see the module's docstring)."""
    started, done = time.monotonic(), Pruned()
    done.files += _remove_files(settings)  # files a crashed run marked but did not unlink
    keep = keep_rule(settings.retention)
    ids = [c.frame_id for c in chosen.frames]
    for start in range(0, len(ids), BATCH):
        with session_scope(settings.db_url) as session:
            marked = operations.mark_pruned(session, ids[start : start + BATCH], keep)
        done.frames += len(marked)
        done.files += _remove_files(settings, marked)
    for path in chosen.duplicates:
        path.unlink(missing_ok=True)
        done.duplicates += 1
    with session_scope(settings.db_url) as session:
        forget = utcnow() - timedelta(days=settings.retention.alerts_days)
        done.alerts = operations.forget_delivered(session, forget)
    metrics.frames_pruned(done.frames)
    done.seconds = time.monotonic() - started
    log.info("pruned %d frames (%d files, %d duplicates)", done.frames, done.files, done.duplicates)
    return done


def _remove_files(settings: Settings, marked: list[tuple[int, str | None]] | None = None) -> int:
    """Unlink the archive files of pruned frames (all such still recorded, when ``marked`` is None),
    then clear their stored paths. Files outside the archive (a frame left where it landed) stay."""
    if marked is None:
        with session_scope(settings.db_url) as session:
            marked = list(operations.files_to_remove(session))
    archive = settings.data_path.resolve() / "archive"
    gone = []
    for frame_id, location in marked:
        if location is None:
            continue
        path = settings.data_path.resolve() / location
        if path.resolve().is_relative_to(archive):
            path.unlink(missing_ok=True)
        gone.append(frame_id)
    if gone:
        with session_scope(settings.db_url) as session:
            operations.files_removed(session, gone)
    return len(gone)


def prune(settings: Settings) -> tuple[Plan, Pruned]:
    """Plan and apply: what the watcher runs every ``retention.every_minutes``."""
    chosen = plan(settings)
    return chosen, apply(settings, chosen)
