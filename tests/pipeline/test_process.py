"""The scoring step both executors run (process_frames; drain, the embedded scorers' loop):
claims, transient failures, repeat deliveries, scorers side by side."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from inspector.config import Settings
from inspector.pipeline import process
from inspector.pipeline.executors import LINGER, drain
from inspector.pipeline.process import Outcome, process_frames
from inspector.pipeline.watcher import Watcher
from inspector.store import queries
from inspector.store.db import session_scope
from tests.pipeline.conftest import counts, write_frames


def _registered(tmp_path: Path, settings: Settings, n: int) -> list[int]:
    incoming = tmp_path / "incoming"
    write_frames(incoming, n)
    watcher = Watcher(incoming, settings)
    watcher.look(watcher.scan())
    watcher.register(watcher.look(watcher.scan()))
    return list(range(1, n + 1))


def test_a_transient_error_hands_the_batch_back_for_an_immediate_retry(
    tmp_path: Path, embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _registered(tmp_path, embedded, 4)

    def database_gone(*_: object, **__: object) -> bool:
        raise OperationalError("INSERT", {}, Exception("connection reset"))

    monkeypatch.setattr(queries, "insert_results", database_gone)
    with pytest.raises(OperationalError):
        process_frames(ids, embedded)
    assert counts(embedded.db_url) == (0, {"queued": 4}, 0)  # released, not stuck in processing
    monkeypatch.undo()

    assert process_frames(ids, embedded).done == 4  # the retry (celery autoretry) takes them at once
    assert counts(embedded.db_url) == (4, {"done": 4}, 1)


def test_a_repeated_delivery_scores_nothing_twice(tmp_path: Path, embedded: Settings) -> None:
    ids = _registered(tmp_path, embedded, 3)
    assert process_frames(ids, embedded).done == 3
    again = process_frames(ids, embedded)
    assert (again.done, again.skipped) == (0, 3)
    assert counts(embedded.db_url) == (3, {"done": 3}, 1)


class _WorkerDied(BaseException):
    """Stands for the worker process dying (no Python cleanup runs, so nothing is released)."""


def test_a_frame_that_kills_its_worker_uses_up_only_its_own_attempts(
    tmp_path: Path, embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frame 3 of a batch of 6 kills the worker whenever it is scored. The message comes back
    (late ack) with the same claimant each time: its frames are then scored one by one, an
    attempt counted for a frame only at its turn, so after max_attempts deliveries of frame 3
    it is quarantined and the other five are done, each tried at most twice."""
    ids = _registered(tmp_path, embedded, 6)
    poison = ids[2]
    score = process._score

    def dying(settings: Settings, frames: list) -> process.Scored:
        if any(frame.id == poison for frame in frames):
            raise _WorkerDied
        return score(settings, frames)

    monkeypatch.setattr(process, "_score", dying)
    deliveries = 0
    while deliveries < 10:
        deliveries += 1
        try:
            outcome = process_frames(ids, embedded, claimant="task-1")
            break
        except _WorkerDied:
            continue
    assert deliveries == embedded.watch.max_attempts + 1
    assert (outcome.quarantined, outcome.done) == (1, 3)  # the first two were done on delivery 2
    assert counts(embedded.db_url) == (5, {"done": 5, "quarantined": 1}, 1)
    with session_scope(embedded.db_url) as session:
        frames = {f.id: f for f in queries.frames_by_id(session, ids)}
    assert frames[poison].error == queries.gave_up_note(embedded.watch.max_attempts)
    assert max(frames[i].attempts for i in ids if i != poison) == 2


def test_the_model_is_loaded_once_per_process(tmp_path: Path, embedded: Settings) -> None:
    first = process.get_detector(embedded)
    assert process.get_detector(embedded) is first


def test_a_failure_while_storing_stops_the_scorer_and_hands_its_batch_back(
    tmp_path: Path, embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _registered(tmp_path, embedded, 4)

    def database_gone(*_: object, **__: object) -> bool:
        raise OperationalError("INSERT", {}, Exception("connection reset"))

    monkeypatch.setattr(queries, "insert_results", database_gone)
    with pytest.raises(OperationalError):
        drain(embedded)  # the batch is stored in another thread: its error still reaches the caller
    assert counts(embedded.db_url) == (0, {"queued": 4}, 0)
    monkeypatch.undo()
    assert drain(embedded).done == 4


def test_an_idle_scorer_keeps_looking_while_another_holds_a_batch(tmp_path: Path, embedded: Settings) -> None:
    busy = multiprocessing.Value("i", 1)  # another scorer is scoring
    outcomes: list[Outcome] = []
    scorer = threading.Thread(target=lambda: outcomes.append(drain(embedded, scoring=busy)))
    scorer.start()
    time.sleep(4 * LINGER)
    assert scorer.is_alive()  # nothing waits, yet it did not leave
    _registered(tmp_path, embedded, 3)  # a batch registered meanwhile is taken
    with busy.get_lock():
        busy.value = 0
    scorer.join(timeout=120)
    assert not scorer.is_alive() and outcomes[0].done == 3
    assert counts(embedded.db_url) == (3, {"done": 3}, 1)


def test_a_scoring_process_takes_the_torch_threads_it_is_given(
    embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery workers side by side on one machine's CPU each use their share of the cores
    (torch_threads), not every core."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(process, "_DETECTORS", OrderedDict())  # loaded here, not taken from the cache
    try:
        torch.set_num_threads(2)
        embedded.torch_threads = 1
        process.get_detector(embedded)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
