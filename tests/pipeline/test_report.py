"""Report arithmetic and formats, on rows made directly (no model needed)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from inspector.pipeline.report import build_report, parse_since, render
from inspector.store.db import get_engine, session_scope
from inspector.store.models import Base, utcnow
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
        everything = build_report(session, since)
        flagged_b = build_report(session, since, flagged=True, source="b")
        future = build_report(session, utcnow() + timedelta(hours=1))
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
