"""Report arithmetic and formats on rows made directly; the report and `inspector quarantine` end to end."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector.cli import main
from inspector.config import Settings
from inspector.pipeline.report import build_report, parse_since, render
from inspector.store.db import get_engine, session_scope
from inspector.store.models import Base, utcnow
from tests.pipeline.conftest import counts, settings_env, write_frames
from tests.store.rows import insert_result, register_frames, register_model

NOW = datetime(2026, 11, 27, 12, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("1.5d", NOW - timedelta(days=1.5)),
        ("2026-11-27T10:00", datetime(2026, 11, 27, 10, 0)),
        ("2026-11-27T10:00+01:00", datetime(2026, 11, 27, 9, 0)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday-ish", now=NOW)


def test_summary_covers_the_window_and_flagged_narrows_the_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    Base.metadata.create_all(get_engine(url))
    with session_scope(url) as session:
        register_model(session, version="m")
        ids = register_frames(session, 6, source="a") + register_frames(session, 4, source="b", first=6)
        for i, fid in enumerate(ids):
            score = i / 10
            insert_result(
                session, frame_id=fid, model_version="m", score=score, threshold=0.55, is_anomaly=score > 0.55
            )
    since = utcnow() - timedelta(hours=1)
    with session_scope(url) as session:
        everything = build_report(session, tmp_path, since)
        flagged_b = build_report(session, tmp_path, since, flagged=True, source="b")
        future = build_report(session, tmp_path, utcnow() + timedelta(hours=1))
    assert (everything.summary.frames, everything.summary.flagged) == (10, 4)
    assert everything.summary.rate == pytest.approx(0.4)
    assert everything.summary.percentiles["p50"] == pytest.approx(0.45)
    assert [r.path for r in flagged_b.rows] == ["/in/6.png", "/in/7.png", "/in/8.png", "/in/9.png"]
    assert (flagged_b.summary.frames, flagged_b.summary.flagged) == (4, 4)
    assert future.summary.frames == 0 and future.summary.percentiles["p50"] is None

    payload = json.loads(render(everything, "json"))
    assert len(payload["rows"]) == 10 and payload["summary"]["flagged"] == 4
    csv_lines = render(everything, "csv").splitlines()
    assert csv_lines[0].startswith("scored_at,frame_id,source") and len(csv_lines) == 11
    table = render(flagged_b, "table")
    assert "anomaly" in table and "4 frames, 4 flagged (100.0%)" in table
    assert "0 frames, 0 flagged" in render(future, "table")


def test_the_report_counts_what_was_set_aside_and_names_files_where_they_lie(
    tmp_path: Path, embedded: Settings
) -> None:
    """Issue 17, item 15: quarantined frames and duplicate files appear in the report's summary,
    each row names its archive file (the folder it landed in is empty), and `inspector quarantine
    list|retry` names the quarantined frames and gives them a second chance."""
    incoming = tmp_path / "incoming"
    paths = write_frames(incoming, 3)
    (incoming / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    shutil.copy(paths[0], incoming / "z-again.png")  # a duplicate of the first frame, found after it
    env = settings_env(embedded) | {"INSPECTOR_WATCH__MAX_DECODED_BYTES": "100"}  # 32x32: 1 KiB each
    runner = CliRunner()
    assert runner.invoke(main, ["watch", str(incoming), "--once"], env=env).exit_code == 0
    assert counts(embedded.db_url)[1] == {"quarantined": 4}

    report = runner.invoke(main, ["report", "--since", "1h"], env=env)
    assert "0 frames" in report.output and "4 quarantined, 1 duplicate files" in report.output
    listed = json.loads(runner.invoke(main, ["quarantine", "list", "--format", "json"], env=env).output)
    assert len(listed) == 4 and all(Path(row["file"]).is_file() for row in listed)
    assert {Path(row["path"]).name for row in listed} == {"f000.png", "f001.png", "f002.png", "damaged.png"}
    assert any("bytes" in row["reason"] for row in listed)
    table = runner.invoke(main, ["quarantine", "list"], env=env).output
    assert "4 quarantined frames" in table and "damaged.png" in table

    env = settings_env(embedded)  # the limit raised again: every frame worth a retry
    retried = runner.invoke(main, ["quarantine", "retry", "--all"], env=env)
    assert retried.exit_code == 0 and "4 of 4 frames pending again" in retried.output
    assert sorted(p.name for p in incoming.iterdir()) == ["damaged.png", "f000.png", "f001.png", "f002.png"]
    assert not list((embedded.data_path / "quarantine").iterdir())  # files and notes went back
    assert runner.invoke(main, ["watch", str(incoming), "--once"], env=env).exit_code == 0
    assert counts(embedded.db_url) == (3, {"done": 3, "quarantined": 1}, 1)  # damaged: again

    rows = json.loads(runner.invoke(main, ["report", "--since", "1h", "--format", "json"], env=env).output)
    assert rows["summary"]["quarantined"] == 1 and rows["summary"]["duplicates"] == 1
    assert len(rows["rows"]) == 3 and all(Path(row["file"]).is_file() for row in rows["rows"])
    assert all("archive" in row["file"] and row["path"].endswith(".png") for row in rows["rows"])
    assert list(incoming.iterdir()) == []
    done = str(rows["rows"][0]["frame_id"])
    again = runner.invoke(main, ["quarantine", "retry", done, "999"], env=env)
    assert again.exit_code == 1 and "not quarantined" in again.output and "no such frame" in again.output


def test_a_retried_frame_is_left_alone_while_its_file_goes_back(
    tmp_path: Path, embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a retry puts a file back, the watcher must not send it to quarantine again (it does
    so with a quarantined frame's file) and no scorer may take the frame (it would find no file):
    the frame is claimed by the retry until its file is back."""
    from inspector.pipeline import ledger, quarantine
    from inspector.store import queries

    incoming = tmp_path / "incoming"
    write_frames(incoming, 2)
    env = settings_env(embedded) | {"INSPECTOR_WATCH__MAX_DECODED_BYTES": "100"}
    assert CliRunner().invoke(main, ["watch", str(incoming), "--once"], env=env).exit_code == 0
    put_back = quarantine._put_back
    seen = []

    def watched_while_put_back(stored: Path, landed: Path) -> None:
        put_back(stored, landed)
        with session_scope(embedded.db_url) as session:
            (frame,) = [f for f in queries.frames_by_id(session, [1, 2]) if f.path == str(landed)]
            seen.append((frame.status, ledger.final_location(frame, archive=True)))

    monkeypatch.setattr(quarantine, "_put_back", watched_while_put_back)
    assert quarantine.retry(embedded, [1, 2]) == {1: "pending", 2: "pending"}
    # Claimed (no scorer takes it before its lease lapses), and the watcher leaves its file alone.
    assert seen == [("processing", None), ("processing", None)]
    assert counts(embedded.db_url)[1] == {"pending": 2}
    assert sorted(p.name for p in incoming.iterdir()) == ["f000.png", "f001.png"]
