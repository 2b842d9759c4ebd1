"""`inspector prune` on a real archive: what it keeps, what it deletes, and that pages survive it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from inspector.cli import main
from inspector.config import RetentionSettings, Settings
from inspector.maps import MAP_KINDS
from inspector.pipeline import retention
from inspector.pipeline.watcher import Watcher
from inspector.store import operations
from inspector.store.db import session_scope
from inspector.store.models import Frame, Result, ResultMap, Review, utcnow
from inspector.web import create_app
from tests.pipeline.conftest import settings_env, write_frames

FLAGGED, REVIEWED = (0, 1), (2,)  # frame indexes (by id order) kept by the policy


def scored_archive(settings: Settings, folder: Path, n: int = 10) -> list[Frame]:
    """n frames scored and archived by the real pipeline, then aged 40 days; two flagged, one reviewed."""
    write_frames(folder, n)
    Watcher(folder, settings).run_once()
    old = utcnow() - timedelta(days=40)
    with session_scope(settings.db_url) as session:
        session.execute(update(Frame).values(landed_at=old, updated_at=old))
        frames = list(session.scalars(select(Frame).order_by(Frame.id)))
        flagged = [frames[i].id for i in FLAGGED]
        session.execute(update(Result).where(Result.frame_id.in_(flagged)).values(is_anomaly=True))
        session.execute(update(Result).where(Result.frame_id.not_in(flagged)).values(is_anomaly=False))
        for i in REVIEWED:
            session.add(Review(frame_id=frames[i].id, label="normal", reviewer="Ada"))
    assert all((settings.data_path / f.stored_path).is_file() for f in frames)
    return frames


def policy(settings: Settings, **values: object) -> Settings:
    options: dict[str, object] = {"max_age_days": 30, "keep_normal_fraction": 0.0} | values
    return dataclasses.replace(settings, retention=RetentionSettings(**options))


def env(settings: Settings) -> dict[str, str]:
    policy = settings.retention
    return settings_env(settings) | {
        "INSPECTOR_RETENTION__MAX_AGE_DAYS": str(policy.max_age_days),
        "INSPECTOR_RETENTION__KEEP_NORMAL_FRACTION": str(policy.keep_normal_fraction),
    }


def test_prune_keeps_flagged_and_reviewed_and_pages_say_pruned(embedded: Settings, tmp_path: Path) -> None:
    settings = policy(embedded)
    frames = scored_archive(settings, tmp_path / "in")
    runner = CliRunner()
    dry = runner.invoke(main, ["prune"], env=env(settings))
    assert dry.exit_code == 0, dry.output
    assert "would prune 7 frames (7 by age, 0 by size)" in dry.output and "3 frames kept" in dry.output
    assert all((settings.data_path / f.stored_path).is_file() for f in frames)  # a dry run deletes nothing

    applied = runner.invoke(main, ["prune", "--apply"], env=env(settings))
    assert "done" in applied.output and "7 frames, 7 files" in applied.output, applied.output
    kept = {frames[i].id for i in FLAGGED + REVIEWED}
    with session_scope(settings.db_url) as session:
        after = {f.id: f for f in session.scalars(select(Frame))}
        maps = dict(
            session.execute(
                select(Result.frame_id, func.count(ResultMap.kind))
                .outerjoin(ResultMap)
                .group_by(Result.frame_id)
            ).all()
        )
        result_of = dict(session.execute(select(Result.frame_id, Result.id)).all())
    for frame in frames:
        now = after[frame.id]
        if frame.id in kept:
            assert (
                now.pruned_at is None
                and (settings.data_path / frame.stored_path).is_file()
                and maps[frame.id] == len(MAP_KINDS)
            )
        else:
            assert now.pruned_at is not None and now.stored_path is None and maps[frame.id] == 0
            assert not (settings.data_path / frame.stored_path).exists()
    pruned_id = next(f.id for f in frames if f.id not in kept)
    page = TestClient(create_app(settings)).get(f"/results/{result_of[pruned_id]}")
    assert page.status_code == 200 and "were pruned" in page.text and "/maps/" not in page.text

    again = runner.invoke(main, ["prune", "--apply"], env=env(settings))
    assert "pruned 0 frames" in again.output  # idempotent


def test_a_crash_between_database_and_files_is_finished_by_the_next_run(
    embedded: Settings, tmp_path: Path
) -> None:
    settings = policy(embedded)
    frames = scored_archive(settings, tmp_path / "in", n=4)
    victim = frames[3]
    keep = retention.keep_rule(settings.retention)
    with session_scope(settings.db_url) as session:  # the database step committed; then the process died
        assert operations.mark_pruned(session, [victim.id], keep) == [(victim.id, victim.stored_path)]
    assert (settings.data_path / victim.stored_path).is_file()  # the page already says "pruned"
    done = retention.apply(settings, retention.Plan())
    assert done.files == 1 and not (settings.data_path / victim.stored_path).exists()
    with session_scope(settings.db_url) as session:
        assert session.get(Frame, victim.id).stored_path is None


def test_sample_and_size_limit(embedded: Settings, tmp_path: Path) -> None:
    settings = policy(embedded, keep_normal_fraction=1.0)
    scored_archive(settings, tmp_path / "in", n=6)
    assert retention.plan(settings).frames == []  # every normal frame is in a 100% sample
    assert retention.keep_rule(RetentionSettings(keep_normal_fraction=0.25)).sample_below == "4000"
    by_size = policy(settings, max_age_days=0, max_gb=1e-9, keep_normal_fraction=0.0)
    chosen = retention.plan(by_size)
    assert (chosen.by_age, chosen.by_size) == (0, 3) and chosen.map_bytes > 0 and chosen.file_bytes > 0
    assert retention.plan(policy(settings, max_age_days=0)).frames == []  # no limit: never prunes
