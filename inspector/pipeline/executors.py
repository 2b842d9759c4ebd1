"""Where scoring runs: in the watcher's process (inline) or on Celery workers (celery).

Both score through the same claim-and-score step of ``pipeline.process``: Celery workers
take batches of frame ids (never pixels) in ``process_frames``, the task of
``pipeline.distributed`` being a thin wrapper over it; inline scorers pull the next waiting
batch themselves (:func:`score_next`, then :func:`store`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple, Protocol

from inspector import logs
from inspector.config import Settings
from inspector.pipeline.distributed import CeleryExecutor
from inspector.pipeline.process import (
    Outcome,
    blame,
    forward_pass,
    released_on_error,
    score_next,
    score_suspect,
    store,
)
from inspector.store import queries
from inspector.store.db import session_scope

log = logging.getLogger(__name__)


class Executor(Protocol):
    # True when this process is the only one scoring: frames it finds in flight at start
    # were orphaned by its own previous run and can be taken back at once.
    exclusive: bool

    def submit(self, frame_ids: Sequence[int]) -> Outcome | None:
        """Hand over frames already committed as 'queued'."""
        ...

    def wake(self, frames: int) -> None:
        """``frames`` frames were just registered: scorers waiting for work may look again."""
        ...

    def messages_lost(self) -> bool:
        """Whether frames queued earlier may never reach a scorer unless handed over again."""
        ...

    def close(self) -> None:
        """The watcher stops: end what this executor runs."""
        ...


class EventLike(Protocol):
    def is_set(self) -> bool: ...


class CounterLike(Protocol):
    value: int

    def get_lock(self) -> AbstractContextManager[Any]: ...


# In a scorer process: set when the watcher stops, how many scorers hold a batch, and a count
# the watcher moves on each time it registers frames.
_stopping: EventLike | None = None
_scoring: CounterLike | None = None
_news: CounterLike | None = None


LINGER = 0.25  # seconds a scorer keeps looking for new frames once none is being scored
POLL = 0.02  # seconds between its looks meanwhile
RECALL = 0.1  # seconds between the executor's looks for a scorer to send back


@contextmanager
def _holding(scoring: CounterLike | None) -> Iterator[None]:
    """Count this scorer in ``scoring`` while it claims and scores a batch."""
    if scoring is None:
        yield
        return
    with scoring.get_lock():
        scoring.value += 1
    try:
        yield
    finally:
        with scoring.get_lock():
            scoring.value -= 1


def drain(
    settings: Settings,
    stop: EventLike | None = None,
    scoring: CounterLike | None = None,
    news: CounterLike | None = None,
) -> Outcome:
    """Score waiting frames batch by batch until none has come for LINGER seconds, or ``stop``.

    Each batch is stored (results, maps, the commit's fsync, the archive moves) in a thread of
    its own while the next one is claimed and scored, so the core keeps computing while the
    database writes; at most one batch waits to be stored.

    A scorer that finds nothing keeps looking while another scorer (``scoring`` counts them)
    is busy and for LINGER seconds after: frames of a burst are registered a few hundred at a
    time, and a scorer that left at the first empty look would leave the rest of the burst to
    the others, its core idle until the whole hand-over ended.

    Between looks it waits for ``news`` (the count of frames the watcher registered) to move
    on by a forward pass's worth rather than asking the database every POLL seconds: an empty
    look costs ~0.4–1 ms of CPU, reading the count nothing. It asks anyway after
    ``watch.gather_seconds``, for frames that gathered that long and frames handed back.
    """
    stop = stop or _stopping
    scoring = scoring or _scoring
    news = news or _news
    total, idle_since = Outcome(), None
    storing: Future[Outcome] | None = None
    enough = forward_pass(settings)
    with ThreadPoolExecutor(1, thread_name_prefix="store") as storer:
        try:
            while not (stop is not None and stop.is_set()):
                mark = news.value if news is not None else None
                with _holding(scoring):
                    scored = score_next(settings)
                if scored is not None:
                    if storing is not None:  # the previous batch stored first; if it failed, this one
                        with released_on_error(settings, scored.claimed):  # goes back too
                            previous, storing = storing, None
                            total.add(previous.result())
                    storing = storer.submit(store, settings, scored)
                    idle_since = None
                    continue
                if scoring is not None and scoring.value > 0:
                    idle_since = None
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= LINGER:
                    break
                _await(news, mark, enough, stop, settings.watch.gather_seconds)
        finally:
            if storing is not None:
                total.add(storing.result())
    log.debug("scorer done: %d frames scored, %d quarantined", total.done, total.quarantined)
    return total


def _await(
    news: CounterLike | None, mark: int | None, enough: int, stop: EventLike | None, seconds: float
) -> None:
    """Sleep until ``news`` has moved on from ``mark`` by ``enough``, ``stop`` is set or ``seconds``
    have passed (without a count: one POLL)."""
    deadline = time.monotonic() + (seconds if news is not None else 0.0)
    while True:
        time.sleep(POLL)
        if (
            news is None
            or mark is None
            or news.value - mark >= enough
            or (stop is not None and stop.is_set())
        ):
            return
        if time.monotonic() >= deadline:
            return


def _nothing() -> None:
    """Submitted after the scorers: CPython's process pool (3.11) wakes its manager thread before
    it starts the process a submission needs, so the manager can go on watching only the
    scorers started before; one more submission makes it watch them all. Without it the
    death of the last-started scorer went unnoticed and its batch was never handed out again."""


def _start_scorer(
    stop: EventLike,
    scoring: CounterLike,
    news: CounterLike,
    torch_threads: int,
    log_level: int,
    log_format: str = "text",
) -> None:
    """A scorer process: the watcher's stop signal, the busy count, the registrations' count, its
    share of the cores, the watcher's logging."""
    global _stopping, _scoring, _news
    _stopping, _scoring, _news = stop, scoring, news
    _die_with_parent()
    import torch

    torch.set_num_threads(torch_threads)
    logs.configure(log_level, log_format, "%(asctime)s %(levelname)s %(processName)s: %(message)s")


def _die_with_parent() -> None:
    """A scorer process ends with the watcher, so a watcher killed with SIGKILL leaves none behind
    scoring on its own: a daemon thread looks for the parent every second.

    Not Linux's parent-death signal: it fires when the *thread* that started the process ends,
    and scorers are started from threads that end before the pool is shut down; a scorer killed
    so while holding the pool's queue lock left the others waiting on it for ever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _isolated(settings: Settings, claimant: str) -> Outcome:
    """A process of its own scoring suspects one at a time, each stored before the next, until
    none is left or the watcher stops."""
    total = Outcome()
    while not (_stopping is not None and _stopping.is_set()):
        outcome = score_suspect(settings, claimant)
        if outcome is None:
            break
        total.add(outcome)
    return total


class _Scorers(NamedTuple):
    pool: ProcessPoolExecutor
    busy: CounterLike  # how many of its scorers hold a batch


class InlineExecutor:
    """The embedded default: no broker; scorers on this machine pull batches from the database.

    Each scorer takes the next batch of waiting frames until none is left, frames registered
    meanwhile included, so a backlog keeps every scorer busy. One scorer runs in the
    watcher's own scoring thread; ``watch.scorers`` > 1 starts that many processes (each
    with cores ÷ scorers torch threads), so that they never take turns on one interpreter
    lock. If a scorer process dies, the watcher survives: the frames of the batches in
    progress are suspects at its next recover, each scored alone (``_suspects``).
    """

    exclusive = True

    def __init__(self, settings: Settings):
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._news = self._context.Value("q", 0)  # frames registered (wake)
        self._lock = threading.Lock()  # pool start and hand-over against close()
        self._scorers: _Scorers | None = None

    def submit(self, frame_ids: Sequence[int]) -> Outcome:
        """Score these frames and every other waiting one; returns when none is left or on close().

        A scorer that left (none waited for LINGER seconds) while another still scores is sent
        back as soon as one holds a batch again: the next wave of frames (a burst after a lull)
        would otherwise fall to the scorers still there, the others' cores idle until it ended.
        """
        total = self._suspects()
        scorers = max(1, self.settings.watch.scorers)
        if scorers == 1:
            total.add(drain(self.settings, self._stop, news=self._news))
            return total
        with self._lock:
            if self._stop.is_set():
                return total
            if self._scorers is None:
                threads = self.settings.torch_threads or max(1, (os.cpu_count() or 1) // scorers)
                level = logging.getLogger().getEffectiveLevel()
                busy = self._context.Value("i", 0)  # a new count with each pool: a dead one's may stay up
                pool = ProcessPoolExecutor(
                    scorers,
                    self._context,
                    initializer=_start_scorer,
                    initargs=(self._stop, busy, self._news, threads, level, logs.current_format()),
                )
                self._scorers = _Scorers(pool, busy)
            current = self._scorers
            pool, busy = current
            running = {pool.submit(drain, self.settings) for _ in range(scorers)}
            pool.submit(_nothing)  # see _nothing
        try:
            while running:
                done, running = wait(running, timeout=RECALL, return_when=FIRST_COMPLETED)
                for future in done:
                    total.add(future.result())
                missing = scorers - len(running)
                if running and missing and busy.value > 0:
                    with self._lock:
                        if not self._stop.is_set():
                            running |= {pool.submit(drain, self.settings) for _ in range(missing)}
        except BrokenProcessPool:
            with self._lock:  # a scorer died: its claimed frames go out again at the next recover
                if self._scorers is current:
                    self._scorers = None
            pool.shutdown(wait=True)  # once its other scorers are gone too: none of them claims any more
            raise
        return total

    def wake(self, frames: int) -> None:
        with self._news.get_lock():
            self._news.value += frames

    def _suspects(self) -> Outcome:
        """Score the frames whose scorer died holding them (the watcher itself, with one scorer),
        one at a time in a process of their own: only a death of that process, seen from here,
        counts an attempt against the frame it held, so a watcher killed (however often) never
        quarantines a frame, and a frame that kills its scorer uses up its attempts alone."""
        total = Outcome()
        limit = self.settings.watch.max_attempts
        while not self._stop.is_set():
            with session_scope(self.settings.db_url) as session:
                if not queries.has_suspects(session, limit):
                    break
            claimant = f"isolated-{uuid.uuid4().hex[:16]}"
            threads = max(1, os.cpu_count() or 1)
            level = logging.getLogger().getEffectiveLevel()
            initargs = (
                self._stop,
                self._context.Value("i", 0),
                self._news,
                threads,
                level,
                logs.current_format(),
            )
            with ProcessPoolExecutor(1, self._context, initializer=_start_scorer, initargs=initargs) as pool:
                try:
                    total.add(pool.submit(_isolated, self.settings, claimant).result())
                except BrokenProcessPool:
                    total.add(blame(self.settings, claimant))
        return total

    def messages_lost(self) -> bool:
        return False  # no messages: scorers pull what is queued from the database

    def close(self) -> None:
        """Final: no new batch starts; wait for the scorers to finish the ones in progress."""
        with self._lock:
            self._stop.set()
            current, self._scorers = self._scorers, None
        if current is not None:
            current.pool.shutdown(wait=True)


def make_executor(settings: Settings) -> Executor:
    return CeleryExecutor(settings) if settings.executor == "celery" else InlineExecutor(settings)
