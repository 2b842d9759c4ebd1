"""`inspector watch`: register frames that land in a folder and hand them to the executor.

Files are found by inotify events (``pipeline.inotify``) and by a scan at start and every
``rescan_seconds``. A file is read once it is complete: its writer closed it (IN_CLOSE_WRITE)
or it was renamed into the folder, the usual atomic hand-over; otherwise (a file found by a
scan, a writer that reopens its files) once its size and mtime held still across two looks
``settle_seconds`` apart. The frame row is committed before anything is queued, and
each rescan re-queues frames left pending or stuck in flight, so a restart loses nothing.

Files whose names match ``watch.ignore`` (a camera's sidecar files) are left alone, counted;
links, pipes and devices are never read (each is named once in the log). Every file is
reached without following a link (``pipeline.ledger``), so nothing outside the root is read.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections import Counter
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from inspector import metrics
from inspector.config import Settings
from inspector.pipeline.executors import Executor, make_executor
from inspector.pipeline.inotify import Changes, Inotify
from inspector.pipeline.ledger import (
    Folders,
    duplicate_location,
    final_location,
    hash_file,
    is_ignored,
    lstat,
    matches,
    move_files,
    path_text,
    quarantine_location,
    text_path,
    walk_folders,
)
from inspector.pipeline.process import Outcome, place_files
from inspector.store import queries
from inspector.store.db import session_scope
from inspector.store.models import Frame

log = logging.getLogger(__name__)

Signature = tuple[int, int]  # size, mtime in ns
TICK = 0.05  # seconds: the shortest turn of the watch loop
SEND_INTERVAL = 0.1  # seconds between sends to the workers (celery), to gather frames into batches
RETRY_SECONDS = 5.0  # after a failed scoring step (a dead scorer, the database away)
REMEMBERED = 10_000  # links and pipes named in the log, remembered so each is named once


class Watcher:
    """One watched folder feeding one executor; every frame gets the same source name."""

    def __init__(
        self,
        root: str | Path,
        settings: Settings,
        executor: Executor | None = None,
        source: str | None = None,
    ):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder: {root}")
        self.settings = settings
        self.executor = executor or make_executor(settings)
        self.source = source or settings.watch.source
        self.data_dir = settings.data_path.resolve()
        self.stats: Counter[str] = Counter()
        self._looks: dict[Path, tuple[Signature, float]] = {}  # last look: signature, when
        self._not_plain: set[Path] = set()  # links, pipes, devices already named in the log

    # --- finding files -------------------------------------------------------------------

    def _skipped(self, folder: Path) -> bool:
        """Folders never looked into: hidden ones and the data folder (when it lies inside)."""
        return folder.name.startswith(".") or folder == self.data_dir

    def scan(self) -> set[Path]:
        """Every file under the root, outside the skipped folders; links to folders are not entered.
        Files ``watch.ignore`` names are left out, and counted (stats["ignored"], per scan)."""
        found = {folder / name for folder, files in walk_folders(self.root, self._skipped) for name in files}
        ignored = {path for path in found if matches(path, self.settings.watch.ignore)}
        self.stats["ignored"] = len(ignored)
        return found - ignored

    def _signature(self, path: Path, folders: Folders) -> Signature | None:
        """(size, mtime) of a plain file inside the root worth reading; None for anything else."""
        if not path.is_relative_to(self.root) or path.is_relative_to(self.data_dir):
            return None
        if is_ignored(path, self.root) or matches(path, self.settings.watch.ignore):
            return None
        try:
            info = lstat(path, folders)  # a link is never followed, as a file or a folder on the way
        except OSError:
            return None
        if stat.S_ISREG(info.st_mode):
            return info.st_size, info.st_mtime_ns
        if path not in self._not_plain:
            if len(self._not_plain) >= REMEMBERED:
                self._not_plain.clear()
            self._not_plain.add(path)
            self.stats["not plain files"] = len(self._not_plain)
            log.warning("%s is not a plain file (a link, pipe or device): left where it is, never read", path)
        return None

    def look(
        self, paths: set[Path], settle: float = 0.0, complete: AbstractSet[Path] = frozenset()
    ) -> list[Path]:
        """The files done being written: ``complete`` ones, and those whose size and mtime are
        the same as at the previous look.

        A file is looked at again only once ``settle`` seconds have passed since its last look.
        """
        now = time.monotonic()
        ready = []
        with Folders() as folders:
            for path in paths | complete | set(self._looks):
                previous = self._looks.get(path)
                if previous is not None and now - previous[1] < settle and path not in complete:
                    continue
                signature = self._signature(path, folders)
                if signature is None:
                    self._looks.pop(path, None)
                elif path in complete or (previous is not None and previous[0] == signature):
                    ready.append(path)
                    self._looks.pop(path, None)
                else:
                    self._looks[path] = (signature, now)
        return sorted(ready)

    def _next_look(self, settle: float) -> float | None:
        """Seconds until the earliest file is due for its next look; None when none waits."""
        if not self._looks:
            return None
        return max(0.0, min(seen for _, seen in self._looks.values()) + settle - time.monotonic())

    # --- the ledger ------------------------------------------------------------------------

    def register(self, paths: list[Path]) -> None:
        """Commit a frame row per new content; known content is settled, not registered again."""
        moves: list[tuple[Path, str, str | None]] = []
        placed: list[tuple[Frame, Path, str]] = []  # finished frames whose file is moved now
        duplicates: list[tuple[Frame, Path]] = []  # files of a registered frame's content
        with session_scope(self.settings.db_url) as session, Folders() as folders:
            found: list[tuple[Path, str]] = []
            rows: list[dict[str, Any]] = []
            for path in paths:
                try:
                    digest, size, mtime = hash_file(path, folders)
                except OSError:
                    continue  # gone or replaced by a link since the look: the next look decides
                landed = datetime.fromtimestamp(mtime, UTC).replace(tzinfo=None)
                found.append((path, digest))
                rows.append(
                    dict(
                        content_hash=digest,
                        path=path_text(path),
                        source=self.source,
                        size_bytes=size,
                        landed_at=landed,
                    )
                )
            new = queries.insert_frames(session, rows)  # one statement, not one per file
            self.stats["registered"] += len(new)
            metrics.frames_registered(self.source, len(new))
            seen = [(path, digest) for path, digest in found if path_text(path) not in new]
            frames = queries.frames_by_hash(session, [digest for _, digest in seen])
            for path, digest in seen:
                known = frames.get(digest)
                if known is None:
                    continue
                if known.status in queries.WAITING and not _exists(text_path(known.path)):
                    # Moved within the folder before it was scored: follow it.
                    queries.set_frame_path(session, known.id, path_text(path))
                elif known.path != path_text(path):
                    log.info("%s duplicates frame %s (%s)", path, known.id, known.path)
                    moves.append((path, duplicate_location(known, path), None))
                    duplicates.append((known, path))
                elif location := final_location(known, self.settings.watch.archive):
                    # Its result was committed but the process died (or the move failed) before
                    # the file was moved.
                    moves.append((path, location, known.error if known.status == "quarantined" else None))
                    placed.append((known, path, location))
        if new:
            self.executor.wake(len(new))  # committed: scorers waiting for work may look again
        unmoved = move_files(self.data_dir, moves)
        # A duplicate counts once it is moved aside (one that could not be is met again at a rescan).
        moved = [(frame, path) for frame, path in duplicates if path not in unmoved]
        self.stats["duplicates"] += len(moved)
        if not moved and not placed:
            return
        with session_scope(self.settings.db_url) as session:
            queries.record_duplicates(
                session,
                [
                    {"frame_id": f.id, "path": path_text(p), "stored_path": duplicate_location(f, p)}
                    for f, p in moved
                ],
            )
            for frame, path, location in placed:
                stored = None if path in unmoved else location
                if stored != frame.stored_path:
                    queries.set_stored_path(session, frame.id, stored)

    def recover(self) -> Outcome | None:
        """Queue what waits (pending, or in flight with nobody at work on it) and hand it to the
        executor.

        An inline executor is the only scorer: whatever is in flight was its previous run's. With
        workers, a claim is orphaned once its worker stopped renewing it (``claim_lease_seconds``),
        and a queued frame once its message may be lost (``messages_lost``), else after
        ``stale_seconds``.
        """
        watch = self.settings.watch
        resend = not self.executor.exclusive and self.executor.messages_lost()
        with session_scope(self.settings.db_url) as session:
            now = queries.database_time(session)  # the clock claims are stamped by, whatever this host's
            if self.executor.exclusive:
                queued_before = lease_before = now
            else:
                lease_before = now - timedelta(seconds=watch.claim_lease_seconds)
                queued_before = now if resend else now - timedelta(seconds=watch.stale_seconds)
            lost = queries.give_up_frames(session, queued_before, lease_before, watch.max_attempts)
            for frame in lost:
                queries.set_stored_path(session, frame.id, quarantine_location(frame))
            queued = queries.queue_waiting(session, queued_before, lease_before)
        for frame in lost:
            log.warning("quarantined frame %s (%s): %s", frame.id, frame.path, frame.error)
        place_files(self.settings, [(frame, quarantine_location(frame), frame.error) for frame in lost])
        self.stats["quarantined"] += len(lost)
        metrics.frames_quarantined(frame.source for frame in lost)
        if not queued:
            return None
        self.stats["queued"] += len(queued)
        outcome = self.executor.submit(queued)
        if outcome is not None:
            self.stats["done"] += outcome.done
            self.stats["quarantined"] += outcome.quarantined
            self.stats["deferred"] += outcome.deferred
        return outcome

    # --- running ---------------------------------------------------------------------------

    def run_once(self) -> None:
        """Two looks at the folder, register what held still, process what waits; then return."""
        try:
            self.look(self.scan())
            time.sleep(self.settings.watch.settle_seconds)
            self.register(self.look(self.scan()))
            self.recover()
        finally:
            self.executor.close()

    def run(self, stop: threading.Event | None = None) -> None:
        """Watch until stopped: inotify events between rescans, a full rescan every
        rescan_seconds (every settle_seconds where there is no inotify).

        Scoring (or sending to the workers) runs in a thread of its own, so files keep being
        looked at and registered on time while a batch is scored.
        """
        stop = stop or threading.Event()
        work, finished = threading.Event(), threading.Event()
        scorer = threading.Thread(target=self._recover_when_asked, args=(work, finished), name="recover")
        events = Inotify.open(self.root, self._skipped)
        scorer.start()
        log.info("watching %s (source %r, executor %s)", self.root, self.source, self.settings.executor)
        next_rescan = 0.0
        settle = self.settings.watch.settle_seconds
        rescan_every = self.settings.watch.rescan_seconds if events else settle
        trust_close = self.settings.watch.ready_on_close
        try:
            while not stop.is_set():
                changes = events.read() if events else Changes()
                paths = changes.paths
                if changes.rescan or time.monotonic() >= next_rescan:
                    paths |= self.scan()
                    next_rescan = time.monotonic() + rescan_every
                    changes.rescan = True
                ready = []
                try:
                    ready = self.look(paths, settle, changes.complete if trust_close else frozenset())
                    if ready:
                        self.register(ready)
                except Exception:  # noqa: BLE001 - a service loop: log, look again soon
                    log.exception("watch step failed; scanning again in %g s", RETRY_SECONDS)
                    next_rescan = min(next_rescan, time.monotonic() + RETRY_SECONDS)
                if ready or changes.rescan:
                    work.set()
                # Sleep until an event, a file's second look, or settle_seconds (to notice stop),
                # but at least TICK: files landing together are looked at and registered together.
                due = self._next_look(settle)
                stop.wait(TICK)
                timeout = (settle if due is None else min(settle, due)) - TICK
                if events:
                    events.wait(timeout)
                else:
                    stop.wait(max(0.0, timeout))
        finally:
            finished.set()
            work.set()
            self.executor.close()  # the batches in progress finish and commit; no new ones start
            scorer.join()
            if events:
                events.close()

    def _recover_when_asked(self, work: threading.Event, finished: threading.Event) -> None:
        """The scoring thread: recover() each time the main loop registered frames or rescanned
        (with workers, every half claim lease too), and RETRY_SECONDS after a step that failed.

        Sending to workers takes no time, so each file registered would go out as a batch of
        its own; a pause of SEND_INTERVAL between sends gathers them into batches instead.
        """
        pause = 0.0 if self.executor.exclusive else SEND_INTERVAL
        # With workers, also every half lease: claims of workers that died and messages a broker
        # lost are found within seconds, not at the next rescan.
        every = None if self.executor.exclusive else self.settings.watch.claim_lease_seconds / 2
        while True:
            work.wait(every)
            if finished.is_set():
                return
            work.clear()
            try:
                self.recover()
            except Exception:  # noqa: BLE001 - a service loop: log, retry soon
                log.exception("scoring step failed; retrying in %g s", RETRY_SECONDS)
                finished.wait(RETRY_SECONDS)
                work.set()  # frames a failed step left in flight go out again
            finished.wait(pause)


def _exists(path: Path) -> bool:
    """Whether the path names something (a link included), reached without following a link."""
    try:
        lstat(path)
    except OSError:
        return False
    return True
