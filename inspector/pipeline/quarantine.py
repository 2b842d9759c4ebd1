"""`inspector quarantine list|retry`: the frames set aside, and a second chance for them.

A retry puts a quarantined frame's file back where it landed (beside no other file of that name:
one there is never replaced), forgets its attempts and error, and makes it pending: the watcher
scores it at its next recover (a rescan, a new frame, or its start). A frame quarantined for its
content (a damaged file) is quarantined again with the same reason; one set aside by a limit
since raised, or by worker deaths that were not its fault, is scored.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from inspector.config import Settings
from inspector.pipeline.ledger import NOTE_SUFFIX, text_path
from inspector.pipeline.report import stored_file
from inspector.store import queries
from inspector.store.db import session_scope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quarantined:
    frame_id: int
    source: str
    quarantined_at: datetime
    file: str  # where it lies now (its quarantine file)
    path: str  # where it landed
    reason: str


def quarantined(settings: Settings, since: datetime, source: str | None = None) -> list[Quarantined]:
    with session_scope(settings.db_url) as session:
        frames = queries.quarantined_frames(session, since, source)
        return [
            Quarantined(
                f.id,
                f.source,
                f.updated_at,
                stored_file(settings.data_path, f.stored_path, f.path),
                f.path,
                f.error or "",
            )
            for f in frames
        ]


def retry(settings: Settings, ids: list[int]) -> dict[int, str]:
    """Make these quarantined frames pending again, each file back where it landed; returns what
    became of each id ("pending", or why not).

    The frame is taken back first (``queries.take_back``: claimed, so that neither the watcher,
    which moves a quarantined frame's file to quarantine, nor a scorer, which would find no file
    yet, acts on it), then its file is put back, then it is made pending. The other orders left a
    frame pending with its file back in quarantine when the watcher saw the file first (at once
    where the quarantine lies on another file system: the file is copied, then closed)."""
    with session_scope(settings.db_url) as session:
        frames = {f.id: f for f in queries.frames_by_id(session, ids)}
    outcome: dict[int, str] = {}
    for frame_id in ids:
        frame = frames.get(frame_id)
        if frame is None or frame.status != "quarantined":
            outcome[frame_id] = "not quarantined" if frame else "no such frame"
            continue
        claimant = f"retry-{uuid.uuid4().hex[:16]}"
        with session_scope(settings.db_url) as session:
            if not queries.take_back(session, frame_id, claimant):
                outcome[frame_id] = "changed meanwhile"
                continue
        if frame.stored_path:
            try:
                _put_back(settings.data_path / frame.stored_path, text_path(frame.path))
            except OSError as exc:
                with session_scope(settings.db_url) as session:  # as it was: its file is where it lay
                    queries.finish_frame(session, frame_id, "quarantined", frame.stored_path, frame.error)
                outcome[frame_id] = f"file not put back: {exc.strerror or exc}"
                continue
        with session_scope(settings.db_url) as session:
            handed = queries.hand_back(session, frame_id, claimant)
        outcome[frame_id] = "pending" if handed else "changed meanwhile"
    return outcome


def _put_back(stored: Path, landed: Path) -> None:
    """Move a stored file to where it landed, never over another file (a link, then unlink: the
    name is taken or not, atomically); a copy where the two lie on different file systems."""
    landed.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(stored, landed, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with stored.open("rb") as source, open(landed, "xb") as target:
            shutil.copyfileobj(source, target)
    stored.unlink()
    stored.with_name(stored.name + NOTE_SUFFIX).unlink(missing_ok=True)
