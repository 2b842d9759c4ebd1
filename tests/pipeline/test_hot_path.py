"""The hot path: the settle rule under an event-driven loop, events, moving frames out."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector.cli import main
from inspector.config import Settings
from inspector.pipeline.executors import InlineExecutor
from inspector.pipeline.inotify import Changes, Inotify
from inspector.pipeline.ledger import move
from inspector.pipeline.watcher import Watcher
from tests.pipeline.conftest import counts, running, settings_env, until, write_frames


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


def test_a_file_closed_after_writing_or_moved_in_is_ready_at_once(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    written, moved, opened = incoming / "w.png", incoming / "m.png", incoming / "o.png"
    for path in (written, moved, opened):
        path.write_bytes(b"\x89PNG")
    paths, complete = {written, moved, opened}, {written, moved}  # as inotify reports them
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    assert watcher.look(paths, settle=30, complete=complete) == [moved, written]
    assert watcher.look(set(), settle=30) == []  # the open one waits to hold still
    assert watcher.look(set(), settle=30, complete={opened}) == [opened]  # until its close event


def _events(inotify: Inotify) -> Changes:
    assert inotify.wait(5)
    time.sleep(0.05)  # the rest of what was just done
    return inotify.read()


def test_inotify_reports_files_written_or_renamed_in_and_folders_that_appear(tmp_path: Path) -> None:
    root = tmp_path / "incoming"
    for folder in (root / "sub", root / ".hidden", tmp_path / "elsewhere"):
        folder.mkdir(parents=True)
    inotify = Inotify(root, skip=lambda folder: folder.name.startswith("."))
    try:
        assert not inotify.wait(0.05) and inotify.read() == Changes()
        (root / "w.png").write_bytes(b"written")
        (root / "m.png.tmp").write_bytes(b"renamed in")
        (root / "m.png.tmp").rename(root / "m.png")
        (root / "sub" / "s.png").write_bytes(b"in a folder below")
        (root / ".hidden" / "h.png").write_bytes(b"never looked at")
        with (root / "o.png").open("wb") as still_open:
            still_open.write(b"not closed yet")
            still_open.flush()
            changes = _events(inotify)
            # Not the temporary name m.png.tmp: the watcher would leave it alone anyway.
            complete = {root / "w.png", root / "m.png", root / "sub" / "s.png"}
            assert changes == Changes(paths=complete | {root / "o.png"}, complete=complete, rescan=False)
        assert _events(inotify) == Changes(paths={root / "o.png"}, complete={root / "o.png"})

        (root / "new").mkdir()  # its files may have landed before its watch: a rescan
        assert _events(inotify).rescan
        (tmp_path / "elsewhere" / "x.png").write_bytes(b"before the move")
        (tmp_path / "elsewhere").rename(root / "moved")  # a folder moved in: a rescan, and watched
        assert _events(inotify).rescan
        for folder in (root / "new", root / "moved"):
            (folder / "y.png").write_bytes(b"after")
            assert _events(inotify).complete == {folder / "y.png"}
    finally:
        inotify.close()


def test_without_inotify_the_watcher_finds_frames_by_scanning(
    tmp_path: Path, embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda *_, **__: object())  # a libc without inotify_init1
    assert Inotify.open(tmp_path, skip=lambda _: False) is None
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    with running(Watcher(incoming, embedded, InlineExecutor(embedded))):
        time.sleep(0.3)
        write_frames(incoming, 3)
        until(lambda: counts(embedded.db_url)[0] >= 3, 60)
    assert counts(embedded.db_url) == (3, {"done": 3}, 1)


def test_move_renames_and_replaces_an_existing_target(tmp_path: Path) -> None:
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


def _last_started_scorer() -> int:
    """The pid of the scorer started last: the one whose death the process pool used to miss."""
    return max(child.pid for child in multiprocessing.active_children() if child.pid is not None)


def test_close_stops_scorers_after_their_batch(tmp_path: Path, embedded: Settings) -> None:
    incoming, watcher = _sixty_frames_two_scorers(tmp_path, embedded)
    watcher.register(watcher.look(watcher.scan()) or watcher.look(watcher.scan()))
    scoring = threading.Thread(target=watcher.recover)
    scoring.start()
    until(lambda: counts(embedded.db_url)[0] > 0, 60)
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
    with running(watcher):
        until(lambda: counts(embedded.db_url)[0] > 0, 60)
        os.kill(_last_started_scorer(), signal.SIGKILL)
        time.sleep(0.5)
        write_frames(incoming, 1, seed=7, prefix="after-")  # new work: the watcher recovers
        until(lambda: counts(embedded.db_url) == (61, {"done": 61}, 1), 120)
    assert counts(embedded.db_url) == (61, {"done": 61}, 1)
    # A scorer killed between its commit and its archive moves leaves done frames in the
    # folder: the next scan (rescan_seconds, or a restart) archives them, scoring none again.
    Watcher(incoming, embedded, InlineExecutor(embedded)).run_once()
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
    until(lambda: counts(embedded.db_url)[0] > 0, 60)
    os.kill(_last_started_scorer(), signal.SIGKILL)
    cli.join(60)
    assert outcome[0].exit_code == 1 and "a scorer process died" in outcome[0].output
    assert "Traceback" not in outcome[0].output
    Watcher(incoming, embedded, InlineExecutor(embedded)).run_once()  # the next run scores the rest
    assert counts(embedded.db_url) == (60, {"done": 60}, 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waits for its parent, not alive
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_scorer_outlives_the_thread_that_started_it_and_not_its_watcher() -> None:
    """A scorer ends when its watcher is killed, not when the watcher's thread that started it
    ends (Linux's parent-death signal did that: a scorer killed holding the pool's queue lock
    hung the pool's shutdown)."""
    parent = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("scorer_parent.py"))], stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        time.sleep(2.5)
        assert _alive(child)
        parent.kill()
        parent.wait()
        until(lambda: not _alive(child), 10)
        assert not _alive(child)
    finally:
        parent.kill()
