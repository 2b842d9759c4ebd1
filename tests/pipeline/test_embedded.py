"""Embedded mode end to end: a folder, SQLite, the inline executor, the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select, text

from inspector.cli import main
from inspector.config import Settings
from inspector.maps import MAP_KINDS, decode_png
from inspector.pipeline.executors import InlineExecutor
from inspector.pipeline.process import process_frames
from inspector.pipeline.watcher import Watcher
from inspector.store.db import session_scope
from inspector.store.models import Frame, Model, Result, ResultMap, ThresholdChange
from tests.conftest import TINY_SIZE
from tests.pipeline.conftest import counts, running, settings_env, until, write_frames


def _cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=settings_env(settings), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_watch_once_scores_archives_and_reports_50_frames(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    write_frames(incoming, 50)
    assert "done 50" in _cli(embedded, "watch", str(incoming), "--once")

    assert counts(embedded.db_url) == (50, {"done": 50}, 1)
    assert list(incoming.iterdir()) == []
    archived = list((embedded.data_path / "archive").rglob("*.png"))
    assert len(archived) == 50
    with session_scope(embedded.db_url) as session:
        results = session.scalars(select(Result)).all()
        frames = session.scalars(select(Frame)).all()
        maps = session.execute(select(ResultMap.result_id, ResultMap.kind, ResultMap.png)).all()
    assert {(r, kind) for r, kind, _ in maps} == {(r.id, kind) for r in results for kind in MAP_KINDS}
    assert all(decode_png(png).shape == (TINY_SIZE, TINY_SIZE) for *_, png in maps)
    assert {(embedded.data_path / f.stored_path) for f in frames} == set(archived)

    report = json.loads(_cli(embedded, "report", "--since", "1h", "--format", "json"))
    assert len(report["rows"]) == 50 and report["summary"]["frames"] == 50
    assert {Path(r["path"]).name for r in report["rows"]} == {f"f{i:03d}.png" for i in range(50)}
    table = _cli(embedded, "report", "--since", "1h")
    assert "50 frames" in table and "f049.png" in table

    # The same contents landing again are recognised: nothing is scored twice.
    write_frames(incoming, 50)
    _cli(embedded, "watch", str(incoming), "--once")
    assert counts(embedded.db_url) == (50, {"done": 50}, 1)
    assert list(incoming.iterdir()) == []


def test_bad_files_are_quarantined_with_their_error(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    good = write_frames(incoming, 3)
    png = good[0].read_bytes()
    (incoming / "corrupt.png").write_bytes(png[:8] + os.urandom(200))
    (incoming / "empty.png").write_bytes(b"")
    (incoming / "truncated.png").write_bytes(png[: len(png) // 2])
    (incoming / "notes.dat").write_text("not a frame at all")
    (incoming / "f000.json").write_text("{}")  # a camera's sidecar: ignored by pattern, counted
    assert "ignored 1" in _cli(embedded, "watch", str(incoming), "--once")

    with session_scope(embedded.db_url) as session:
        frames = {Path(f.path).name: f for f in session.scalars(select(Frame))}
    bad = ("corrupt.png", "empty.png", "truncated.png", "notes.dat")
    for name in bad:
        frame = frames[name]
        assert frame.status == "quarantined" and frame.error, name
        stored = embedded.data_path / frame.stored_path
        assert stored.is_file() and stored.parent.name == "quarantine"
        assert frame.error in stored.with_name(stored.name + ".error.txt").read_text()
    assert "empty" in frames["empty.png"].error
    assert counts(embedded.db_url)[:2] == (3, {"done": 3, "quarantined": 4})
    assert [p.name for p in incoming.iterdir()] == ["f000.json"]


def test_ignored_files_links_and_duplicates(tmp_path: Path, embedded: Settings) -> None:
    incoming, outside = tmp_path / "incoming", tmp_path / "outside"
    (f0,) = write_frames(incoming, 1)
    secret = write_frames(outside, 2, seed=7)
    (incoming / "sub").mkdir()
    (incoming / "sub" / "copy.png").write_bytes(f0.read_bytes())  # same content, other name
    for name in (".hidden.png", "upload.png.tmp", "upload.png.partial"):
        (incoming / name).write_bytes(secret[0].read_bytes())
    (incoming / ".cache").mkdir()
    (incoming / ".cache" / "x.png").write_bytes(secret[0].read_bytes())
    (incoming / "link.png").symlink_to(secret[0])
    (incoming / "linked-dir").symlink_to(outside, target_is_directory=True)
    _cli(embedded, "watch", str(incoming), "--once")

    with session_scope(embedded.db_url) as session:
        paths = session.scalars(select(Frame.path)).all()
    assert [Path(p).name for p in paths] in (["f000.png"], ["copy.png"])
    assert counts(embedded.db_url)[0] == 1
    left = sorted(p.name for p in incoming.rglob("*"))
    assert left == sorted(
        [
            ".cache",
            ".hidden.png",
            "link.png",
            "linked-dir",
            "sub",
            "upload.png.partial",
            "upload.png.tmp",
            "x.png",
        ]
    )
    assert all(p.exists() for p in secret)  # nothing outside the folder was read or moved
    assert len(list((embedded.data_path / "archive" / "duplicates").iterdir())) == 1


def test_a_file_still_being_written_is_not_read(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    growing = incoming / "growing.png"
    growing.write_bytes(b"\x89PNG")
    assert watcher.look(watcher.scan()) == []  # first look
    with growing.open("ab") as f:
        f.write(b"more bytes")
    assert watcher.look(watcher.scan()) == []  # changed since the first look
    assert watcher.look(watcher.scan()) == [growing]  # held still across two looks


def test_restart_picks_up_frames_left_pending_queued_or_in_flight(tmp_path: Path, embedded: Settings) -> None:
    """A watcher that died at any step: rows committed but not queued, queued, claimed, scored."""
    incoming = tmp_path / "incoming"
    paths = write_frames(incoming, 8)
    first = Watcher(incoming, embedded, InlineExecutor(embedded))
    first.register(first.look(first.scan()) or first.look(first.scan()))  # then "crash": nothing queued
    with session_scope(embedded.db_url) as session:
        session.execute(text("UPDATE frames SET status='queued' WHERE id IN (2, 3)"))
        session.execute(text("UPDATE frames SET status='processing', attempts=1 WHERE id IN (4, 5)"))
    assert counts(embedded.db_url) == (0, {"pending": 4, "queued": 2, "processing": 2}, 0)

    # One frame got its result committed, but the process died before moving the file.
    content = paths[-1].read_bytes()
    process_frames([8], embedded)
    paths[-1].write_bytes(content)

    restarted = Watcher(incoming, embedded, InlineExecutor(embedded))
    restarted.run_once()
    assert counts(embedded.db_url) == (8, {"done": 8}, 1)
    assert list(incoming.iterdir()) == []


def test_inotify_events_drive_the_running_watcher(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    with running(Watcher(incoming, embedded, InlineExecutor(embedded))):
        time.sleep(0.5)  # the start-up scan is done; no rescan for an hour from now on
        for path in write_frames(tmp_path / "staging", 5):
            path.rename(incoming / path.name)  # an atomic arrival, as an uploader should do it
        until(lambda: counts(embedded.db_url)[0] >= 5, 60)
    assert counts(embedded.db_url) == (5, {"done": 5}, 1)


def test_killed_watcher_restarts_without_losing_or_repeating_a_frame(
    tmp_path: Path, embedded: Settings
) -> None:
    incoming, staging = tmp_path / "incoming", tmp_path / "staging"
    incoming.mkdir()
    frames = write_frames(staging, 50)
    env = os.environ | settings_env(embedded) | {"INSPECTOR_WATCH__BATCH_SIZE": "4"}
    cli = [sys.executable, "-c", "from inspector.cli import main; main()"]
    watcher = subprocess.Popen([*cli, "watch", str(incoming)], env=env, stderr=subprocess.DEVNULL)
    try:
        for path in frames[:5]:
            path.rename(incoming / path.name)
        deadline = time.monotonic() + 120
        while counts(embedded.db_url)[0] == 0:  # the watcher is up and its model loaded
            assert time.monotonic() < deadline and watcher.poll() is None
            time.sleep(0.1)
        for path in frames[5:]:
            path.rename(incoming / path.name)
            time.sleep(0.05)
            if counts(embedded.db_url)[0] >= 15:
                break
    finally:
        watcher.kill()  # SIGKILL mid-stream: frames scored, in flight, and not yet landed
        watcher.wait(timeout=30)
    scored_before = counts(embedded.db_url)[0]
    assert 0 < scored_before < 50
    for path in staging.iterdir():
        path.rename(incoming / path.name)

    subprocess.run([*cli, "watch", str(incoming), "--once"], env=env, check=True, capture_output=True)
    assert counts(embedded.db_url) == (50, {"done": 50}, 1)
    assert list(incoming.iterdir()) == []


def test_per_source_threshold_decides_the_verdict(tmp_path: Path, embedded: Settings) -> None:
    write_frames(tmp_path / "cam1", 4, seed=3)
    write_frames(tmp_path / "cam2", 4, seed=4)
    _cli(embedded, "watch", str(tmp_path / "cam1"), "--once", "--source", "cam1")
    out = _cli(embedded, "threshold", "set", "0", "--source", "cam2", "--by", "ada", "--reason", "test")
    assert "cam2" in out and "-> 0" in out
    _cli(embedded, "watch", str(tmp_path / "cam2"), "--once", "--source", "cam2")

    with session_scope(embedded.db_url) as session:
        rows = session.execute(select(Frame.source, Result.threshold, Result.is_anomaly).join(Result)).all()
        (change,) = session.scalars(select(ThresholdChange)).all()
    default = {t for s, t, _ in rows if s == "cam1"}
    assert len(default) == 1 and next(iter(default)) > 0
    assert all(flag and t == 0 for s, t, flag in rows if s == "cam2")
    assert (change.source, change.new_value, change.changed_by, change.reason) == ("cam2", 0.0, "ada", "test")

    shown = _cli(embedded, "threshold", "show")
    assert "cam2" in shown and "set by ada" in shown and "model default" in shown
    flagged = json.loads(_cli(embedded, "report", "--since", "1h", "--flagged", "--format", "json"))
    assert all(r["verdict"] == "anomaly" for r in flagged["rows"]) and flagged["summary"]["frames"] == 8
    assert sum(r["source"] == "cam2" for r in flagged["rows"]) == 4
    only_cam1 = _cli(embedded, "report", "--since", "1h", "--source", "cam1", "--format", "csv")
    sources = [row["source"] for row in csv.DictReader(only_cam1.splitlines()) if row.get("path")]
    assert sources == ["cam1"] * 4 and "4 frames" in only_cam1  # the summary goes to stderr


def test_a_method_switch_scores_on_its_own_scale(tmp_path: Path, embedded: Settings) -> None:
    """The same checkpoint scored with another method is another model: registered with that
    method's own default threshold, its results apart, and an override set on the first
    method's scale never judges its scores."""
    import dataclasses

    from inspector.detector import Checkpoint

    defaults = Checkpoint.load(embedded.model_path).thresholds
    write_frames(tmp_path / "a", 3, seed=5)
    _cli(embedded, "watch", str(tmp_path / "a"), "--once", "--source", "cam")
    _cli(embedded, "threshold", "set", "0", "--source", "cam", "--by", "ada")  # vaegan-attn's scale
    write_frames(tmp_path / "b", 3, seed=6)
    switched = dataclasses.replace(embedded, method="vaegan")
    _cli(switched, "watch", str(tmp_path / "b"), "--once", "--source", "cam")
    with session_scope(embedded.db_url) as session:
        models = {m.method: m.default_threshold for m in session.scalars(select(Model))}
        judged = {(r.method, r.threshold) for r in session.scalars(select(Result))}
    assert models == {"vaegan-attn": defaults["vaegan-attn"], "vaegan": defaults["vaegan"]}
    assert judged == {("vaegan-attn", 0.0), ("vaegan", defaults["vaegan"])}  # the first re-judged at 0
    assert "(vaegan)" in _cli(embedded, "threshold", "set", "1", "--source", "cam")  # the latest registered
    version = ["--model", Checkpoint.load(embedded.model_path).version]
    refused = CliRunner().invoke(main, ["threshold", "set", "1", *version], env=settings_env(embedded))
    assert refused.exit_code != 0 and "several methods" in refused.output
    assert "(vaegan-attn)" in _cli(embedded, "threshold", "set", "1", *version, "--method", "vaegan-attn")


def test_without_a_model_frames_wait_for_the_next_run(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    write_frames(incoming, 3)
    model = embedded.model_path
    embedded.model_path = str(tmp_path / "missing.pt")
    result = CliRunner().invoke(main, ["watch", str(incoming), "--once"], env=settings_env(embedded))
    assert result.exit_code == 1 and "model file not found" in result.output
    assert counts(embedded.db_url) == (0, {"queued": 3}, 0)
    embedded.model_path = model
    _cli(embedded, "watch", str(incoming), "--once")
    assert counts(embedded.db_url) == (3, {"done": 3}, 1)


def test_a_frame_moved_within_the_folder_before_scoring_is_followed(
    tmp_path: Path, embedded: Settings
) -> None:
    incoming = tmp_path / "incoming"
    (first,) = write_frames(incoming / "a", 1)
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    watcher.look(watcher.scan())
    watcher.register(watcher.look(watcher.scan()))  # registered, not yet scored
    (incoming / "b").mkdir()
    first.rename(incoming / "b" / first.name)
    watcher.run_once()
    assert counts(embedded.db_url) == (1, {"done": 1}, 1)
    with session_scope(embedded.db_url) as session:
        assert session.scalar(select(Frame.path)) == str(incoming / "b" / first.name)
