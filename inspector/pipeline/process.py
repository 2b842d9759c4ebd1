"""The scoring step both executors run: frame ids in, results with their maps out, files moved on.

A batch is claimed in SQL first (compare-and-set), so two workers handed the same ids
never both score a frame; the result insert is idempotent on (frame, model version, method),
so even a frame scored twice after a lost worker ends with one result.

Each frame is scored by its source's live model (the registry's, else the configured
``model_path``) and, where the source has a candidate, by the candidate too, in the same
commit: the candidate's results are marked ``shadow`` (never alerted, never queued for review).
The registry is read again every ``registry.poll_seconds``: a promotion needs no restart.

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
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from sqlalchemy.orm import Session

from inspector import metrics
from inspector.config import Settings
from inspector.detector import (
    CheckpointError,
    Detection,
    Detector,
    forward_batch,
    map_arrays,
    resolve_device,
)
from inspector.frames import FrameError, Prepared, check_file_size, frame_from_bytes
from inspector.maps import encode_png, map_planes
from inspector.pipeline import alerts, registry
from inspector.pipeline.ledger import (
    Folders,
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

DETECTORS_KEPT = 4  # models kept loaded per process: the live and candidate models of a few sources
_DETECTORS: OrderedDict[tuple[str, int, str | None, str, int], Detector] = OrderedDict()
_DETECTORS_LOCK = threading.Lock()
_REGISTERED: set[tuple[str, str, str]] = set()  # (database, model version, method)
_WARNED: set[tuple[str, str]] = set()  # candidates that could not be loaded, named once in the log


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


def load_detector(
    settings: Settings, path: str | Path, method: str | None, version: str | None = None
) -> Detector:
    """A model, loaded once per process (again only if its file changes; the last DETECTORS_KEPT
    kept). With ``version`` (the registry's), a file that holds another model is refused: its
    results would be stored under a version that did not make them."""
    path = Path(path).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise CheckpointError(f"model file not found: {path}") from exc
    key = (str(path), mtime, method or None, settings.device, settings.inference_batch)
    with _DETECTORS_LOCK:
        detector = _DETECTORS.get(key)
        if detector is None:
            if settings.torch_threads:
                torch.set_num_threads(settings.torch_threads)
            detector = Detector.load(
                path, method=method or None, device=settings.device, batch_size=settings.inference_batch
            )
            log.info("loaded model %s (%s) on %s", detector.version, detector.method, detector.device)
            _DETECTORS[key] = detector
            while len(_DETECTORS) > DETECTORS_KEPT:
                _DETECTORS.popitem(last=False)
        _DETECTORS.move_to_end(key)
    if version is not None and detector.version != version:
        raise CheckpointError(
            f"{path} holds model {detector.version}, not {version} as the registry says: "
            "register the file again (inspector model register)"
        )
    return detector


def get_detector(settings: Settings) -> Detector:
    """The configured model (``model_path``, ``method``): sources without a live model in the registry."""
    return load_detector(settings, settings.model_path, settings.method)


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


def _read(frame: Frame, folders: Folders) -> bytes:
    """The very bytes that were registered (the hash must match)."""
    try:
        data = read_nofollow(text_path(frame.path), frame.size_bytes + 1, folders)  # more: it grew
    except OSError as exc:
        raise FrameError(f"cannot read file: {exc.strerror or exc}") from exc
    if hashlib.sha256(data).hexdigest() != frame.content_hash:
        raise ChangedFile("file changed after it was registered")
    return data


def _prepared(frame: Frame, data: bytes, detector: Detector, max_bytes: int) -> Prepared:
    """A frame's bytes prepared for a model (its frame spec)."""
    check_file_size(frame.size_bytes, detector.frame_spec)
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


class Scorer(NamedTuple):
    detector: Detector
    shadow: bool  # a candidate scored beside the live model


def _scorers(settings: Settings, sources: set[str]) -> dict[str, list[Scorer]]:
    """Each source's models: its live one (the registry's, else the configured one), then its
    candidate, if it has one that can be loaded (a candidate that cannot never holds up scoring)."""
    chosen: dict[str, list[Scorer]] = {}
    for source, lineup in registry.lineups(settings, sources).items():
        if lineup.live is None:
            live = get_detector(settings)
            _register_model(settings, live)
        else:
            live = load_detector(settings, lineup.live.path, lineup.live.method, lineup.live.version)
        chosen[source] = [Scorer(live, False)]
        candidate = lineup.candidate
        if candidate is None or (candidate.version, candidate.method) == (live.version, live.method):
            continue
        try:
            shadow = load_detector(settings, candidate.path, candidate.method, candidate.version)
        except CheckpointError as exc:
            if (candidate.version, candidate.path) not in _WARNED:
                _WARNED.add((candidate.version, candidate.path))
                log.warning("candidate %s of %s is not scored: %s", candidate.version, source, exc)
            continue
        chosen[source].append(Scorer(shadow, True))
    return chosen


@dataclass
class Scoring:
    """One model's scores of some of a batch's frames."""

    detector: Detector  # the model that scored them (a file may be replaced before they are stored)
    shadow: bool
    frames: list[Frame] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)  # each frame's before flat-fielding (drift)
    scores: list[float] = field(default_factory=list)
    maps: list[dict[str, bytes]] = field(default_factory=list)  # PNG by kind, per frame

    def run(self) -> None:
        batch = np.stack(self.pixels)
        detections = self.detector.score_arrays(batch)
        self.scores = [d.score for d in detections]
        self.maps = stored_maps(batch, detections)
        self.pixels = []


def stored_maps(batch: np.ndarray, detections: Sequence[Detection]) -> list[dict[str, bytes]]:
    """A scored batch's maps as results store them, frame by frame: PNG by kind, the fast kind."""
    return [
        {kind: encode_png(plane, fast=True) for kind, plane in frame_planes.items()}
        for frame_planes in map_planes(map_arrays(batch, detections))
    ]


@dataclass
class Scored:
    """A claimed batch once scored: the results ``store`` commits."""

    claimed: list[int]  # every frame claimed for this batch (released again if storing fails)
    frames: list[Frame]  # those read: each has a live model's result among the scorings
    scorings: list[Scoring]  # live models' first, then candidates'
    unreadable: Outcome  # claimed frames that could not be read: quarantined or deferred
    counted: bool = True  # whether their claim counted an attempt (taken back if it is handed back)


def _score(settings: Settings, frames: list[Frame], counted: bool = True) -> Scored:
    """Read, preprocess and score claimed frames with their sources' models; unreadable ones are
    quarantined (or deferred), each on its own, and on an error of the batch (the model, the
    database) it is handed back. Each file is read once, and preprocessed once per frame spec."""
    claimed = [f.id for f in frames]
    max_bytes = settings.watch.max_decoded_bytes
    # The batch's folders are walked to once, not once per file.
    with released_on_error(settings, claimed, counted), Folders() as folders:
        scorers = _scorers(settings, {f.source for f in frames})
        scorings: dict[tuple[int, bool], Scoring] = {}
        read: list[Frame] = []
        unreadable = Outcome()
        for frame in frames:
            live, *shadows = scorers[frame.source]
            try:
                check_file_size(frame.size_bytes, live.detector.frame_spec)  # before reading it
                data = _read(frame, folders)
                live_prepared = _prepared(frame, data, live.detector, max_bytes)
            except Exception as exc:  # noqa: BLE001 - whatever a decoder raises is this frame's reason
                unreadable.add(_unreadable(settings, frame, exc))
                continue
            read.append(frame)
            for scorer in (live, *shadows):
                prepared = live_prepared
                if scorer.detector.frame_spec != live.detector.frame_spec:
                    try:
                        prepared = _prepared(frame, data, scorer.detector, max_bytes)
                    except Exception as exc:  # noqa: BLE001 - the candidate's problem, not the frame's
                        log.warning(
                            "candidate %s cannot read frame %s: %s", scorer.detector.version, frame.id, exc
                        )
                        continue
                key = (id(scorer.detector), scorer.shadow)
                scoring = scorings.setdefault(key, Scoring(scorer.detector, scorer.shadow))
                scoring.frames.append(frame)
                scoring.pixels.append(prepared.pixels)
                scoring.levels.append(prepared.level)
        ordered = sorted(scorings.values(), key=lambda scoring: scoring.shadow)
        for scoring in ordered:
            scoring.run()
    return Scored(claimed, read, ordered, unreadable, counted)


def _rows(session: Session, scoring: Scoring) -> list[dict[str, Any]]:
    """A scoring's results as rows for insert_results, judged by each source's threshold now."""
    detector = scoring.detector
    limits = effective_thresholds(
        session, detector.version, detector.method, {f.source for f in scoring.frames}
    )
    return [
        {
            "frame_id": frame.id,
            "model_version": detector.version,
            "method": detector.method,
            "score": score,
            "level": level,
            "threshold": limits[frame.source],
            "is_anomaly": is_anomaly(score, limits[frame.source]),
            "shadow": scoring.shadow,
            "maps": maps,
        }
        for frame, score, level, maps in zip(
            scoring.frames, scoring.scores, scoring.levels, scoring.maps, strict=True
        )
    ]


def store(settings: Settings, scored: Scored) -> Outcome:
    """Commit a scored batch's results (live and shadow) with their maps and verdicts, then archive
    the frames. A failure hands the batch back (the frames become claimable again at once)."""
    frames = scored.frames
    outcome = dataclasses.replace(scored.unreadable)
    if not frames:
        return outcome
    locations = {f.id: archive_location(f) if settings.watch.archive else None for f in frames}
    with (
        released_on_error(settings, scored.claimed, scored.counted),
        session_scope(settings.db_url) as session,
    ):
        rows = [_rows(session, scoring) for scoring in scored.scorings]
        queries.insert_results(session, [row for scoring_rows in rows for row in scoring_rows])
        closed = set(queries.finish_frames(session, "done", locations))
        # The live models' flags are queued for alerting in the results' own commit; a
        # candidate's (shadow) never are.
        for scoring in scored.scorings:
            if not scoring.shadow:
                scored_here = sorted(closed.intersection(f.id for f in scoring.frames))
                alerts.queue(
                    session, settings, scoring.detector.version, scoring.detector.method, scored_here
                )
    for scoring, scoring_rows in zip(scored.scorings, rows, strict=True):
        if not scoring.shadow:
            metrics.results_committed(scoring.frames, scoring_rows, closed)
    finished = [frame for frame in frames if frame.id in closed]
    # Only after the commit: a crash here leaves a done frame in the folder, which the
    # watcher's rescan archives; the other order could lose a frame.
    place_files(
        settings, [(f, location, None) for f in finished if (location := locations[f.id]) is not None]
    )
    outcome.done = len(finished)
    return outcome


@contextmanager
def released_on_error(settings: Settings, claimed: list[int], counted: bool = True) -> Iterator[None]:
    """Hand claimed frames back on an error, so a retry can take them now rather than once their
    claim has lapsed (the attempt the claim ``counted`` taken back)."""
    try:
        yield
    except Exception:
        with suppress(Exception), session_scope(settings.db_url) as session:
            queries.release_frames(session, claimed, counted)
        raise


def process_frames(frame_ids: Sequence[int], settings: Settings, claimant: str | None = None) -> Outcome:
    """Score and store the frames with these ids that are still waiting; the rest are skipped.

    ``claimant`` names the delivery (the Celery task id): when the same message comes back
    because its worker died, it resumes the frames that worker had claimed. The frames are
    claimed first, before the model is loaded, and the claim is renewed while they are scored
    (``renewing``): a worker that dies with its host leaves claims that lapse within
    ``watch.claim_lease_seconds``, and the watcher hands those frames out again.
    """
    lease = timedelta(seconds=settings.watch.claim_lease_seconds)
    with session_scope(settings.db_url) as session:
        lease_before = queries.database_time(session) - lease
        attempts = queries.claim_frames(session, list(frame_ids), lease_before, claimant)
        frames = queries.frames_by_id(session, list(attempts))
    outcome = Outcome(skipped=len(set(frame_ids)) - len(attempts))
    if not frames:
        return outcome
    with renewing(settings, list(attempts), claimant):
        if any(attempts[f.id] > 1 for f in frames):
            outcome.add(_one_by_one(settings, frames, attempts))
        else:
            outcome.add(store(settings, _score(settings, frames)))
    return outcome


@contextmanager
def renewing(settings: Settings, claimed: list[int], claimant: str | None) -> Iterator[None]:
    """Renew the claim on these frames every third of ``watch.claim_lease_seconds`` while the block
    runs (a thread of its own, so a long batch or model load keeps it alive). A failed renewal (the
    database away) is tried again at the next turn."""
    if claimant is None:
        yield
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(settings.watch.claim_lease_seconds / 3):
            try:
                with session_scope(settings.db_url) as session:
                    if not queries.renew_claims(session, claimed, claimant):
                        return  # none of them is this claimant's any more
            except Exception as exc:  # noqa: BLE001 - a renewal missed is tried again at the next turn
                log.warning("cannot renew the claim on %d frames: %s", len(claimed), exc)

    thread = threading.Thread(target=renew, name="renew-claims", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _one_by_one(settings: Settings, frames: list[Frame], attempts: dict[int, int]) -> Outcome:
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
        outcome.add(store(settings, _score(settings, [frame])))
    return outcome


def forward_pass(settings: Settings) -> int:
    """Frames a scorer gathers before it claims (a forward pass's worth, at most a claim's)."""
    return min(
        forward_batch(resolve_device(settings.device), settings.inference_batch), settings.watch.batch_size
    )


def score_next(settings: Settings) -> Scored | None:
    """Claim and score a batch of the oldest waiting frames never tried before; None when none
    waits, or too few for a forward pass that arrived within ``watch.gather_seconds`` (the
    embedded scorers' pull, which stores each batch while it scores the next)."""
    watch = settings.watch
    fill = forward_pass(settings)
    gather_before = utcnow() - timedelta(seconds=watch.gather_seconds)
    with session_scope(settings.db_url) as session:
        claimed = queries.claim_next(session, watch.batch_size, fill, gather_before)
        frames = queries.frames_by_id(session, claimed) if claimed else []  # most looks find none
    return _score(settings, frames) if frames else None


def score_suspect(settings: Settings, claimant: str) -> Outcome | None:
    """Claim, score and store the oldest suspect alone (a frame whose scorer died holding it), for
    a process of its own named ``claimant``; None when none is left. Its claim counts no attempt:
    the process that started this one counts it should this one die (``blame``)."""
    with session_scope(settings.db_url) as session:
        frame_id = queries.claim_suspect(session, settings.watch.max_attempts, claimant)
        frames = queries.frames_by_id(session, [frame_id]) if frame_id is not None else []
    if not frames:
        return None
    return store(settings, _score(settings, frames, counted=False))


def blame(settings: Settings, claimant: str) -> Outcome:
    """The process scoring a suspect for ``claimant`` died: that frame counts an attempt, and is
    quarantined once it has ``watch.max_attempts``; otherwise it waits for another try."""
    limit = settings.watch.max_attempts
    with session_scope(settings.db_url) as session:
        held = queries.claimed_by(session, claimant)
        queries.count_attempts(session, [f.id for f in held], +1)
    outcome = Outcome()
    for frame in held:
        log.warning(
            "a scorer died on frame %s (%s), attempt %d of %d",
            frame.id,
            frame.path,
            frame.attempts + 1,
            limit,
        )
        if frame.attempts + 1 >= limit:
            outcome.quarantined += _quarantine(settings, frame, queries.gave_up_note(limit))
        else:
            with session_scope(settings.db_url) as session:
                queries.release_frames(session, [frame.id], counted=False)
    return outcome
