"""process_frames, the function both executors run: claims, transient failures, repeat deliveries."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from inspector.config import Settings
from inspector.pipeline import process
from inspector.pipeline.process import process_frames
from inspector.pipeline.watcher import Watcher
from inspector.store import queries
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


def test_the_model_is_loaded_once_per_process(tmp_path: Path, embedded: Settings) -> None:
    first = process.get_detector(embedded)
    assert process.get_detector(embedded) is first
