"""The scoring step both executors run: frame ids in, results with their maps out, files moved on.

A batch is claimed in SQL first (compare-and-set), so two workers handed the same ids
never both score a frame; the result insert is idempotent on (frame, model version), so
even a frame scored twice after a lost worker ends with one result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from inspector.config import Settings
from inspector.detector import CheckpointError, Detector
from inspector.frames import BYTES_PER_PIXEL_BOUND, FrameError, frame_from_bytes
from inspector.maps import encode_png, map_planes
from inspector.pipeline.ledger import archive_location, move, quarantine_location, read_nofollow
from inspector.pipeline.thresholds import effective_thresholds
from inspector.store import queries
from inspector.store.db import session_scope
from inspector.store.models import Frame, utcnow

log = logging.getLogger(__name__)

_DETECTORS: dict[tuple[str, int, str | None, str, int], Detector] = {}
_REGISTERED: set[tuple[str, str]] = set()


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
    key = (str(path), mtime, settings.method, settings.device, settings.watch.batch_size)
    if key not in _DETECTORS:
        _DETECTORS.clear()
        _DETECTORS[key] = Detector.load(
            path, method=settings.method, device=settings.device, batch_size=settings.watch.batch_size
        )
        log.info("loaded model %s on %s", _DETECTORS[key].version, _DETECTORS[key].device)
    return _DETECTORS[key]


def _register_model(settings: Settings, detector: Detector) -> None:
    if (settings.db_url, detector.version) in _REGISTERED:
        return
    checkpoint = detector.checkpoint
    with session_scope(settings.db_url) as session:
        queries.ensure_model(
            session,
            version=detector.version,
            path=str(Path(settings.model_path).resolve()),
            method=detector.method,
            default_threshold=detector.threshold,
            config={
                "model": dataclasses.asdict(checkpoint.model_config),
                "frames": dataclasses.asdict(checkpoint.frame_spec),
                "thresholds": checkpoint.thresholds,
                "metadata": checkpoint.metadata,
            },
        )
    _REGISTERED.add((settings.db_url, detector.version))


def _load(frame: Frame, detector: Detector) -> np.ndarray:
    """Read the very bytes that were registered (the hash must match) and preprocess them."""
    spec = detector.frame_spec
    if frame.size_bytes > spec.max_pixels * BYTES_PER_PIXEL_BOUND + (1 << 20):
        raise FrameError(f"file of {frame.size_bytes} bytes is too large for {spec.max_pixels} pixels")
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


def _score(settings: Settings, detector: Detector, frames: list[Frame], outcome: Outcome) -> None:
    loaded: list[tuple[Frame, np.ndarray]] = []
    for frame in frames:
        try:
            loaded.append((frame, _load(frame, detector)))
        except FrameError as exc:
            outcome.quarantined += _quarantine(settings, frame, str(exc))
    if not loaded:
        return
    batch = np.stack([pixels for _, pixels in loaded])
    detections = detector.score_arrays(batch)
    planes = map_planes(batch, detections)
    locations = {frame.id: archive_location(frame) if settings.watch.archive else None for frame, _ in loaded}
    with session_scope(settings.db_url) as session:
        limits = effective_thresholds(
            session, detector.version, detector.threshold, {f.source for f, _ in loaded}
        )
        rows = [
            {
                "frame_id": frame.id,
                "model_version": detector.version,
                "score": detection.score,
                "threshold": limits[frame.source],
                "is_anomaly": detection.score > limits[frame.source],
                "maps": {kind: encode_png(plane, fast=True) for kind, plane in frame_planes.items()},
            }
            for (frame, _), detection, frame_planes in zip(loaded, detections, planes, strict=True)
        ]
        queries.insert_results(session, rows)
        closed = set(queries.finish_frames(session, "done", locations))
    finished = [(frame, locations[frame.id]) for frame, _ in loaded if frame.id in closed]
    # Only after the commit: a crash here leaves a done frame in the folder, which the
    # watcher's rescan archives; the other order could lose a frame.
    for frame, location in finished:
        if location is not None:
            move(Path(frame.path), settings.data_path, location)
    outcome.done += len(finished)


def process_frames(frame_ids: Sequence[int], settings: Settings, claimant: str | None = None) -> Outcome:
    """Score the frames with these ids that are still waiting; the rest are skipped.

    ``claimant`` names the delivery (the Celery task id): when the same message comes back
    because its worker died, it resumes the frames that worker had claimed.
    """
    stale_before = utcnow() - timedelta(seconds=settings.watch.stale_seconds)
    claimed, outcome = _claim_and_score(
        settings, lambda session: queries.claim_frames(session, list(frame_ids), stale_before, claimant)
    )
    outcome.skipped = len(set(frame_ids)) - claimed
    return outcome


def process_next(settings: Settings) -> Outcome | None:
    """Score a batch of the oldest waiting frames; None when none waits (the embedded scorers' pull)."""
    watch = settings.watch
    claimed, outcome = _claim_and_score(
        settings, lambda session: queries.claim_next(session, watch.batch_size, watch.max_attempts)
    )
    return outcome if claimed else None


def _claim_and_score(settings: Settings, claim: Callable[[Session], list[int]]) -> tuple[int, Outcome]:
    """Claim frames in one transaction, then score them; how many were claimed, and what came of them."""
    detector = get_detector(settings)
    _register_model(settings, detector)
    with session_scope(settings.db_url) as session:
        claimed = claim(session)
        frames = queries.frames_by_id(session, claimed)
    outcome = Outcome()
    try:
        _score(settings, detector, frames, outcome)
    except Exception:
        # Hand the batch back so a retry can take it now rather than after stale_seconds.
        with suppress(Exception), session_scope(settings.db_url) as session:
            queries.release_frames(session, claimed)
        raise
    return len(claimed), outcome
