"""The hot path: the settle rule under an event-driven loop, events, moving frames out."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from watchdog.events import (
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
)

from inspector.cli import main
from inspector.config import Settings
from inspector.pipeline.executors import InlineExecutor
from inspector.pipeline.ledger import move
from inspector.pipeline.watcher import Watcher, _Events
from tests.pipeline.conftest import counts, settings_env, write_frames


def test_a_file_is_ready_only_after_holding_still_for_settle_seconds(
    tmp_path: Path, embedded: Settings
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    frame = incoming / "f.png"
    frame.write_bytes(b"\x89PNG")
    assert watcher.look({frame}, settle=0.3) == []  # first look
    assert watcher.look(set(), settle=0.3) == []  # too soon for a second look
    assert watcher._next_look(0.3) is not None
    time.sleep(0.3)
    with frame.open("ab") as f:
        f.write(b"more")
    assert watcher.look(set(), settle=0.3) == []  # changed: the clock starts again
    time.sleep(0.3)
    assert watcher.look(set(), settle=0.3) == [frame]
    assert watcher._next_look(0.3) is None


def test_a_folder_modified_event_does_not_ask_for_a_rescan(tmp_path: Path) -> None:
    events = _Events()
    events.on_any_event(DirModifiedEvent(str(tmp_path)))  # a file in it changed: its own event says which
    assert events.drain() == (set(), set(), False) and not events.arrived.is_set()
    events.on_any_event(FileMovedEvent(str(tmp_path / "a.png.tmp"), str(tmp_path / "a.png")))
    events.on_any_event(DirMovedEvent(str(tmp_path / "x"), str(tmp_path / "y")))  # files without events
    assert events.arrived.is_set()
    assert events.drain() == ({tmp_path / "a.png"}, {tmp_path / "a.png"}, True)


def test_a_file_closed_after_writing_or_moved_in_is_ready_at_once(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    events = _Events()
    written, moved, opened = incoming / "w.png", incoming / "m.png", incoming / "o.png"
    for path in (written, moved, opened):
        path.write_bytes(b"\x89PNG")
    events.on_any_event(FileCreatedEvent(str(written)))
    events.on_any_event(FileClosedEvent(str(written)))
    events.on_any_event(FileMovedEvent(str(incoming / "m.png.tmp"), str(moved)))
    events.on_any_event(FileCreatedEvent(str(opened)))  # still open: no close event yet
    paths, complete, _ = events.drain()
    assert complete == {written, moved}
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    assert watcher.look(paths, settle=30, complete=complete) == [moved, written]
    assert watcher.look(set(), settle=30) == []  # the open one waits to hold still
    assert watcher.look(set(), settle=30, complete={opened}) == [opened]  # until its close event


def test_move_links_then_unlinks_and_replaces_an_existing_target(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = tmp_path / "f.png"
    source.write_bytes(b"frame")
    assert move(source, data, "archive/f.png")
    assert not source.exists() and (data / "archive/f.png").read_bytes() == b"frame"
    source.write_bytes(b"again")
    assert move(source, data, "archive/f.png", note="why")
    assert (data / "archive/f.png").read_bytes() == b"again"
    assert (data / "archive/f.png.error.txt").read_text() == "why\n"
    assert not move(source, data, "archive/g.png")  # gone
    outside = tmp_path / "secret.txt"
    outside.write_text("not a frame")
    (tmp_path / "link.png").symlink_to(outside)
    assert move(tmp_path / "link.png", data, "quarantine/link.png")
    assert (data / "quarantine/link.png").is_symlink() and outside.read_text() == "not a frame"


def test_scorer_processes_score_each_frame_once(tmp_path: Path, embedded: Settings) -> None:
    embedded.watch.scorers, embedded.watch.batch_size = 2, 4
    incoming = tmp_path / "incoming"
    write_frames(incoming, 18)
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    watcher.run_once()
    assert watcher.stats["done"] == 18
    assert counts(embedded.db_url) == (18, {"done": 18}, 1)


def _sixty_frames_two_scorers(tmp_path: Path, embedded: Settings) -> tuple[Path, Watcher]:
    embedded.watch.scorers, embedded.watch.batch_size = 2, 2
    incoming = tmp_path / "incoming"
    write_frames(incoming, 60)
    return incoming, Watcher(incoming, embedded, InlineExecutor(embedded))


def _until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_close_stops_scorers_after_their_batch(tmp_path: Path, embedded: Settings) -> None:
    incoming, watcher = _sixty_frames_two_scorers(tmp_path, embedded)
    watcher.register(watcher.look(watcher.scan()) or watcher.look(watcher.scan()))
    scoring = threading.Thread(target=watcher.recover)
    scoring.start()
    _until(lambda: counts(embedded.db_url)[0] > 0, 60)
    watcher.executor.close()  # as on SIGTERM: the batches in progress finish, no new one starts
    scoring.join()
    results, statuses, _ = counts(embedded.db_url)
    assert 0 < results < 60 and "processing" not in statuses
    assert watcher.executor.submit([]).done == 0  # closed for good
    Watcher(incoming, embedded, InlineExecutor(embedded)).run_once()
    assert counts(embedded.db_url) == (60, {"done": 60}, 1)


def test_a_killed_scorer_process_loses_no_frame(tmp_path: Path, embedded: Settings) -> None:
    """kill -9 of a scorer mid-burst: the watcher carries on, the batches in progress go out again."""
    incoming, watcher = _sixty_frames_two_scorers(tmp_path, embedded)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _until(lambda: counts(embedded.db_url)[0] > 0, 60)
        os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
        time.sleep(0.5)
        write_frames(incoming, 1, seed=7, prefix="after-")  # new work: the watcher recovers
        _until(lambda: counts(embedded.db_url) == (61, {"done": 61}, 1), 120)
    finally:
        stop.set()
        thread.join(60)
    assert counts(embedded.db_url) == (61, {"done": 61}, 1)
    assert list(incoming.iterdir()) == []


def test_watch_once_says_when_a_scorer_process_died(tmp_path: Path, embedded: Settings) -> None:
    incoming, _ = _sixty_frames_two_scorers(tmp_path, embedded)
    env = {**settings_env(embedded), "INSPECTOR_WATCH__SCORERS": "2", "INSPECTOR_WATCH__BATCH_SIZE": "2"}
    outcome = []
    cli = threading.Thread(
        target=lambda: outcome.append(CliRunner().invoke(main, ["watch", str(incoming), "--once"], env=env))
    )
    cli.start()
    _until(lambda: counts(embedded.db_url)[0] > 0, 60)
    os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
    cli.join(60)
    assert outcome[0].exit_code == 1 and "a scorer process died" in outcome[0].output
    assert "Traceback" not in outcome[0].output
    Watcher(incoming, embedded, InlineExecutor(embedded)).run_once()  # the next run scores the rest
    assert counts(embedded.db_url) == (60, {"done": 60}, 1)
