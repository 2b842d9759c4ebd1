"""The scoring step both executors run: frame ids in, results with their maps out, files moved on.

A batch is claimed in SQL first (compare-and-set), so two workers handed the same ids
never both score a frame; the result insert is idempotent on (frame, model version, method),
so even a frame scored twice after a lost worker ends with one result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from inspector.config import Settings
from inspector.detector import CheckpointError, Detector, map_arrays
from inspector.frames import FrameError, check_file_size, frame_from_bytes
from inspector.maps import encode_png, map_planes
from inspector.pipeline.ledger import archive_location, move, quarantine_location, read_nofollow
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

    def add(self, other: Outcome) -> None:
        self.done += other.done
        self.quarantined += other.quarantined
        self.skipped += other.skipped


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
    checkpoint = detector.checkpoint
    with session_scope(settings.db_url) as session:
        queries.ensure_model(
            session,
            version=detector.version,
            method=detector.method,
            path=str(Path(settings.model_path).resolve()),
            default_threshold=detector.threshold,
            config={
                "family": checkpoint.family.name,
                "model": dataclasses.asdict(checkpoint.model_config),
                "frames": dataclasses.asdict(checkpoint.frame_spec),
                "thresholds": checkpoint.thresholds,
                "metadata": checkpoint.metadata,
            },
        )
    _REGISTERED.add(key)


def _load(frame: Frame, detector: Detector) -> np.ndarray:
    """Read the very bytes that were registered (the hash must match) and preprocess them."""
    spec = detector.frame_spec
    check_file_size(frame.size_bytes, spec)
    try:
        data = read_nofollow(frame.path)
    except OSError as exc:
        raise FrameError(f"cannot read file: {exc.strerror or exc}") from exc
    if hashlib.sha256(data).hexdigest() != frame.content_hash:
        raise FrameError("file changed after it was registered")
    return frame_from_bytes(data, spec)


def _quarantine(settings: Settings, frame: Frame, error: str) -> bool:
    location = quarantine_location(frame)
    with session_scope(settings.db_url) as session:
        closed = queries.finish_frame(session, frame.id, "quarantined", location, error)
    if closed:
        log.warning("quarantined frame %s (%s): %s", frame.id, frame.path, error)
        move(Path(frame.path), settings.data_path, location, note=error)
    return closed


@dataclass
class Scored:
    """A claimed batch once scored: the results ``store`` commits."""

    detector: Detector  # the model that scored it (the file may be replaced before it is stored)
    claimed: list[int]  # every frame claimed for this batch (released again if storing fails)
    frames: list[Frame]  # those scored, in the order of the lists below
    scores: list[float]
    maps: list[dict[str, bytes]]  # PNG by kind, per frame
    quarantined: int  # claimed frames that could not be read


def _score(settings: Settings, detector: Detector, frames: list[Frame]) -> Scored:
    """Read, preprocess and score claimed frames; unreadable ones are quarantined, and on an
    error the whole batch is handed back."""
    claimed = [f.id for f in frames]
    with released_on_error(settings, claimed):
        loaded: list[tuple[Frame, np.ndarray]] = []
        quarantined = 0
        for frame in frames:
            try:
                loaded.append((frame, _load(frame, detector)))
            except FrameError as exc:
                quarantined += _quarantine(settings, frame, str(exc))
        if not loaded:
            return Scored(detector, claimed, [], [], [], quarantined)
        batch = np.stack([pixels for _, pixels in loaded])
        detections = detector.score_arrays(batch)
        maps = [
            {kind: encode_png(plane, fast=True) for kind, plane in frame_planes.items()}
            for frame_planes in map_planes(map_arrays(batch, detections))
        ]
    return Scored(detector, claimed, [f for f, _ in loaded], [d.score for d in detections], maps, quarantined)


def store(settings: Settings, scored: Scored) -> Outcome:
    """Commit a scored batch's results with their maps and verdicts, then archive the frames.

    A failure hands the batch back (the frames become claimable again at once).
    """
    detector, frames = scored.detector, scored.frames
    if not frames:
        return Outcome(quarantined=scored.quarantined)
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
    finished = [(frame, locations[frame.id]) for frame in frames if frame.id in closed]
    # Only after the commit: a crash here leaves a done frame in the folder, which the
    # watcher's rescan archives; the other order could lose a frame.
    for frame, location in finished:
        if location is not None:
            move(Path(frame.path), settings.data_path, location)
    return Outcome(done=len(finished), quarantined=scored.quarantined)


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
