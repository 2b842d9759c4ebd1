"""The scoring step both executors run: frame ids in, results with their maps out, files moved on.

A batch is claimed in SQL first (compare-and-set), so two workers handed the same ids
never both score a frame; the result insert is idempotent on (frame, model version, method),
so even a frame scored twice after a lost worker ends with one result.

A frame that cannot be read is that frame's problem, whatever the decoder raised: it is
quarantined with the reason, and the rest of its batch is scored. Unless its file may still
be being written (it changed since it was registered or within ``watch.quiet_seconds``, or a
process holds it open for writing): then it is unregistered, and the watcher registers the
file again with its final content.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from inspector import metrics
from inspector.config import Settings
from inspector.detector import CheckpointError, Detector, map_arrays
from inspector.frames import FrameError, check_file_size, frame_from_bytes
from inspector.maps import encode_png, map_planes
from inspector.pipeline import alerts
from inspector.pipeline.ledger import (
    archive_location,
    lstat,
    move_files,
    open_for_writing,
    quarantine_location,
    read_nofollow,
    text_path,
)
from inspector.pipeline.thresholds import effective_thresholds, is_anomaly
from inspector.store import queries
from inspector.store.db import session_scope
from inspector.store.models import Frame, utcnow

log = logging.getLogger(__name__)

_DETECTORS: dict[tuple[str, int, str | None, str, int], Detector] = {}
_REGISTERED: set[tuple[str, str, str]] = set()  # (database, model version, method)


@dataclass
class Outcome:
    """What one call did, for logs and task results."""

    done: int = 0
    quarantined: int = 0
    skipped: int = 0  # not claimable: already finished, or in flight elsewhere
    deferred: int = 0  # unreadable while still being written: left for the watcher to register again

    def add(self, other: Outcome) -> None:
        self.done += other.done
        self.quarantined += other.quarantined
        self.skipped += other.skipped
        self.deferred += other.deferred


def get_detector(settings: Settings) -> Detector:
    """The model, loaded once per process (and again only if the checkpoint file changes)."""
    path = Path(settings.model_path).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise CheckpointError(f"model file not found: {path}") from exc
    key = (str(path), mtime, settings.method, settings.device, settings.inference_batch)
    if key not in _DETECTORS:
        _DETECTORS.clear()
        _DETECTORS[key] = Detector.load(
            path, method=settings.method, device=settings.device, batch_size=settings.inference_batch
        )
        log.info("loaded model %s on %s", _DETECTORS[key].version, _DETECTORS[key].device)
    return _DETECTORS[key]


def _register_model(settings: Settings, detector: Detector) -> None:
    """Record the checkpoint and method that score, with the method's default threshold: the
    database is where the pipeline and the dashboard both take thresholds from."""
    key = (settings.db_url, detector.version, detector.method)
    if key in _REGISTERED:
        return
    with session_scope(settings.db_url) as session:
        queries.ensure_model(
            session,
            version=detector.version,
            method=detector.method,
            path=str(Path(settings.model_path).resolve()),
            default_threshold=detector.threshold,
            config=detector.checkpoint.description(),
        )
    _REGISTERED.add(key)


class ChangedFile(FrameError):
    """The file holds other bytes than the ones registered: its writer was not done."""


def _load(frame: Frame, detector: Detector, max_bytes: int) -> np.ndarray:
    """Read the very bytes that were registered (the hash must match) and preprocess them."""
    check_file_size(frame.size_bytes, detector.frame_spec)
    try:
        data = read_nofollow(text_path(frame.path), frame.size_bytes + 1)  # more: it grew
    except OSError as exc:
        raise FrameError(f"cannot read file: {exc.strerror or exc}") from exc
    if hashlib.sha256(data).hexdigest() != frame.content_hash:
        raise ChangedFile("file changed after it was registered")
    return frame_from_bytes(data, detector.frame_spec, max_bytes)


def _still_written(settings: Settings, frame: Frame, error: Exception) -> str | None:
    """Why the frame's file may still be being written, or None if it has held still for
    ``watch.quiet_seconds`` and no process holds it open for writing (or it is gone: nothing
    to wait for)."""
    path = text_path(frame.path)
    try:
        info = lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    if isinstance(error, ChangedFile) or info.st_size != frame.size_bytes:
        return "changed since it was registered"
    age = time.time() - max(info.st_mtime, info.st_ctime)  # ctime: a writer cannot set it back
    if abs(age) < settings.watch.quiet_seconds:
        return f"changed {age:.1f} s ago"
    if open_for_writing(path):  # a writer that paused longer, its file still open
        return "is open for writing"
    return None


def _unreadable(settings: Settings, frame: Frame, error: Exception) -> Outcome:
    """A claimed frame that could not be read: handed back to the watcher while its file may still
    be being written, else quarantined with the reason."""
    reason = str(error) if isinstance(error, FrameError) else f"cannot read the frame: {error!r}"
    written = _still_written(settings, frame, error)
    if written is None:
        return Outcome(quarantined=int(_quarantine(settings, frame, reason)))
    with session_scope(settings.db_url) as session:
        forgotten = queries.forget_frame(session, frame.id)
    if forgotten:
        metrics.frames_deferred([frame.source])
        log.info(
            "frame %s (%s) unreadable (%s), but its file %s: registered again later",
            frame.id,
            frame.path,
            reason,
            written,
        )
    return Outcome(deferred=int(forgotten))


def _quarantine(settings: Settings, frame: Frame, error: str) -> bool:
    location = quarantine_location(frame)
    with session_scope(settings.db_url) as session:
        closed = queries.finish_frame(session, frame.id, "quarantined", location, error)
    if closed:
        metrics.frames_quarantined([frame.source])
        log.warning("quarantined frame %s (%s): %s", frame.id, frame.path, error)
        place_files(settings, [(frame, location, error)])
    return closed


def place_files(settings: Settings, moves: list[tuple[Frame, str, str | None]]) -> None:
    """Move finished frames' files to the stored locations their rows already name; a frame whose
    file could not be moved gets no stored path (the rescan moves it later), never one that
    names a file that is not there."""
    sources = [(text_path(frame.path), location, note) for frame, location, note in moves]
    unmoved = move_files(settings.data_path, sources)
    if unmoved:
        with session_scope(settings.db_url) as session:
            for frame, *_ in moves:
                if text_path(frame.path) in unmoved:
                    queries.set_stored_path(session, frame.id, None)


@dataclass
class Scored:
    """A claimed batch once scored: the results ``store`` commits."""

    detector: Detector  # the model that scored it (the file may be replaced before it is stored)
    claimed: list[int]  # every frame claimed for this batch (released again if storing fails)
    frames: list[Frame]  # those scored, in the order of the lists below
    scores: list[float]
    maps: list[dict[str, bytes]]  # PNG by kind, per frame
    unreadable: Outcome  # claimed frames that could not be read: quarantined or deferred


def _score(settings: Settings, detector: Detector, frames: list[Frame]) -> Scored:
    """Read, preprocess and score claimed frames; unreadable ones are quarantined (or deferred),
    each on its own, and on an error of the batch (the model, the database) it is handed back."""
    claimed = [f.id for f in frames]
    with released_on_error(settings, claimed):
        loaded: list[tuple[Frame, np.ndarray]] = []
        unreadable = Outcome()
        for frame in frames:
            try:
                loaded.append((frame, _load(frame, detector, settings.watch.max_decoded_bytes)))
            except Exception as exc:  # noqa: BLE001 - whatever a decoder raises is this frame's reason
                unreadable.add(_unreadable(settings, frame, exc))
        if not loaded:
            return Scored(detector, claimed, [], [], [], unreadable)
        batch = np.stack([pixels for _, pixels in loaded])
        detections = detector.score_arrays(batch)
        maps = [
            {kind: encode_png(plane, fast=True) for kind, plane in frame_planes.items()}
            for frame_planes in map_planes(map_arrays(batch, detections))
        ]
    return Scored(detector, claimed, [f for f, _ in loaded], [d.score for d in detections], maps, unreadable)


def store(settings: Settings, scored: Scored) -> Outcome:
    """Commit a scored batch's results with their maps and verdicts, then archive the frames.

    A failure hands the batch back (the frames become claimable again at once).
    """
    detector, frames = scored.detector, scored.frames
    outcome = dataclasses.replace(scored.unreadable)
    if not frames:
        return outcome
    locations = {f.id: archive_location(f) if settings.watch.archive else None for f in frames}
    with released_on_error(settings, scored.claimed), session_scope(settings.db_url) as session:
        sources = {f.source for f in frames}
        limits = effective_thresholds(session, detector.version, detector.method, sources)
        rows = [
            {
                "frame_id": frame.id,
                "model_version": detector.version,
                "method": detector.method,
                "score": score,
                "threshold": limits[frame.source],
                "is_anomaly": is_anomaly(score, limits[frame.source]),
                "maps": maps,
            }
            for frame, score, maps in zip(frames, scored.scores, scored.maps, strict=True)
        ]
        queries.insert_results(session, rows)
        closed = set(queries.finish_frames(session, "done", locations))
        # The live model's flags are queued for alerting in the results' own commit (the only
        # model scored today; one scored beside it to be compared would store without this).
        alerts.queue(session, settings, detector.version, detector.method, sorted(closed))
    metrics.results_committed(frames, rows, closed)
    finished = [frame for frame in frames if frame.id in closed]
    # Only after the commit: a crash here leaves a done frame in the folder, which the
    # watcher's rescan archives; the other order could lose a frame.
    place_files(
        settings, [(f, location, None) for f in finished if (location := locations[f.id]) is not None]
    )
    outcome.done = len(finished)
    return outcome


@contextmanager
def released_on_error(settings: Settings, claimed: list[int]) -> Iterator[None]:
    """Hand claimed frames back on an error, so a retry can take them now rather than after
    stale_seconds."""
    try:
        yield
    except Exception:
        with suppress(Exception), session_scope(settings.db_url) as session:
            queries.release_frames(session, claimed)
        raise


def _registered_detector(settings: Settings) -> Detector:
    detector = get_detector(settings)
    _register_model(settings, detector)
    return detector


def process_frames(frame_ids: Sequence[int], settings: Settings, claimant: str | None = None) -> Outcome:
    """Score and store the frames with these ids that are still waiting; the rest are skipped.

    ``claimant`` names the delivery (the Celery task id): when the same message comes back
    because its worker died, it resumes the frames that worker had claimed.
    """
    stale_before = utcnow() - timedelta(seconds=settings.watch.stale_seconds)
    detector = _registered_detector(settings)
    with session_scope(settings.db_url) as session:
        attempts = queries.claim_frames(session, list(frame_ids), stale_before, claimant)
        frames = queries.frames_by_id(session, list(attempts))
    outcome = Outcome(skipped=len(set(frame_ids)) - len(attempts))
    if any(attempts[f.id] > 1 for f in frames):
        outcome.add(_one_by_one(settings, detector, frames, attempts))
    elif frames:
        outcome.add(store(settings, _score(settings, detector, frames)))
    return outcome


def _one_by_one(
    settings: Settings, detector: Detector, frames: list[Frame], attempts: dict[int, int]
) -> Outcome:
    """A batch whose worker died: score its frames one at a time, each stored before the next,
    counting an attempt for a frame only when its turn comes. A frame that kills workers then
    uses up its own attempts alone, and one tried more than ``watch.max_attempts`` times is
    quarantined instead of scored again (a message put back on worker loss would otherwise
    kill workers forever); the frames after it are scored when the message comes back."""
    limit = settings.watch.max_attempts
    outcome = Outcome()
    for frame in frames:
        if attempts[frame.id] > limit:
            outcome.quarantined += _quarantine(settings, frame, queries.gave_up_note(limit))
    queue = [f for f in frames if attempts[f.id] <= limit]
    if len(queue) > 1:
        with session_scope(settings.db_url) as session:  # the claim counted a try for each
            queries.count_attempts(session, [f.id for f in queue[1:]], -1)
    for turn, frame in enumerate(queue):
        if turn:
            with session_scope(settings.db_url) as session:
                queries.count_attempts(session, [frame.id], +1)
        outcome.add(store(settings, _score(settings, detector, [frame])))
    return outcome


def score_next(settings: Settings) -> Scored | None:
    """Claim and score a batch of the oldest waiting frames; None when none waits (the embedded
    scorers' pull, which stores each batch while it scores the next)."""
    detector, watch = _registered_detector(settings), settings.watch
    with session_scope(settings.db_url) as session:
        claimed = queries.claim_next(session, watch.batch_size, watch.max_attempts)
        frames = queries.frames_by_id(session, claimed)
    return _score(settings, detector, frames) if frames else None
