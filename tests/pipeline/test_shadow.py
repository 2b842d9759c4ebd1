"""Shadow scoring and the registry's pick-up: a candidate scores the same frames as the live model in
the same commit, its verdicts stored but never alerted nor queued for review; a promotion or a
rollback reaches running scorers (process_frames: the Celery task; the watcher) without a restart."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inspector.config import Settings
from inspector.detector import CheckpointError, Detector
from inspector.pipeline import registry
from inspector.pipeline.process import get_detector, process_frames
from inspector.pipeline.thresholds import set_threshold
from inspector.pipeline.watcher import Watcher
from inspector.store import operations, queries, review
from inspector.store.db import session_scope
from inspector.store.models import AlertOutbox, Frame, Result, ResultMap
from tests.pipeline.conftest import counts, running, until, write_frames


@pytest.fixture
def cam(embedded: Settings) -> Settings:
    """Embedded settings for source "cam" with a webhook configured (nothing listens: alerts wait in
    the outbox), the registry read afresh at every batch."""
    embedded.watch.source = "cam"
    embedded.alerts.webhook_url = "http://127.0.0.1:9/hook"
    embedded.registry.poll_seconds = 0
    return embedded


def _frames(tmp_path: Path, settings: Settings, n: int, seed: int, folder: str = "in") -> list[int]:
    incoming = tmp_path / folder
    write_frames(incoming, n, seed=seed, prefix=f"s{seed}-")
    watcher = Watcher(incoming, settings)
    watcher.look(watcher.scan())
    watcher.register(watcher.look(watcher.scan()))
    with session_scope(settings.db_url) as session:
        ids = session.scalars(select(Frame.id).where(Frame.status == "pending").order_by(Frame.id)).all()
    assert len(ids) == n
    return list(ids)


def _register(settings: Settings, path: Path, live: bool = False, source: str = "cam") -> Detector:
    detector = Detector.load(path, device="cpu")
    with session_scope(settings.db_url) as session:
        registry.register_file(session, detector, path, source, "ada", "test", live)
    return detector


def _results(settings: Settings) -> list[tuple[int, str, bool, bool]]:
    with session_scope(settings.db_url) as session:
        rows = session.execute(
            select(Result.frame_id, Result.model_version, Result.shadow, Result.is_anomaly).order_by(
                Result.id
            )
        )
        return [tuple(row) for row in rows]


def test_a_candidate_scores_beside_the_live_model_and_never_alerts(
    tmp_path: Path, cam: Settings, tiny_candidate: Path
) -> None:
    live = get_detector(cam)
    candidate = _register(cam, tiny_candidate)
    ids = _frames(tmp_path, cam, 5, seed=3)
    with session_scope(cam.db_url) as session:  # everything flagged, by both models
        queries.ensure_model(
            session,
            version=live.version,
            method=live.method,
            path=cam.model_path,
            default_threshold=live.threshold,
            config={},
        )
        for detector in (live, candidate):
            set_threshold(session, "cam", detector.version, detector.method, -1e9, "test")
    assert process_frames(ids, cam).done == 5

    rows = _results(cam)
    assert sorted((frame, version, shadow) for frame, version, shadow, _ in rows) == sorted(
        [(i, live.version, False) for i in ids] + [(i, candidate.version, True) for i in ids]
    )
    assert all(flagged for *_, flagged in rows)
    with session_scope(cam.db_url) as session:
        # Alerts: the live model's five flags; the candidate's are never queued.
        queued = session.scalars(select(AlertOutbox.result_id)).all()
        shadow_ids = session.scalars(select(Result.id).where(Result.shadow.is_(True))).all()
        assert len(queued) == 5 and not set(queued) & set(shadow_ids)
        # The review queue holds each frame once, by its live result.
        assert review.queue_count(session, review.QueueFilter()) == 5
        assert review.queue_count(session, review.QueueFilter(model_version=candidate.version)) == 0
        # The API lists the pipeline's verdicts, and a candidate's when asked (shadow=true).
        for shadow, versions in ((False, {live.version}), (True, {candidate.version}), (None, None)):
            listed = operations.result_rows(session, operations.ResultQuery(shadow=shadow), None, 50)
            assert {row.model_version for row in listed} == (versions or {live.version, candidate.version})
            assert all(row.shadow is (row.model_version == candidate.version) for row in listed)
        # The overview counts the pipeline's verdicts only.
        assert review.overview(session, datetime(2000, 1, 1), []).results == 5
        # Both results of a frame were stored by one statement, in one commit.
        stamps = select(Result.frame_id, func.count(func.distinct(Result.created_at))).group_by(
            Result.frame_id
        )
        assert {n for _, n in session.execute(stamps)} == {1}


def test_promotion_and_rollback_reach_a_running_scorer_without_a_restart(
    tmp_path: Path, cam: Settings, tiny_candidate: Path
) -> None:
    configured = get_detector(cam)
    candidate = _register(cam, tiny_candidate)
    first = _frames(tmp_path, cam, 2, seed=3, folder="a")
    process_frames(first, cam)
    with session_scope(cam.db_url) as session:
        registry.promote(session, "cam", who="ada", reason="fewer false alarms")
    second = _frames(tmp_path, cam, 2, seed=4, folder="b")
    process_frames(second, cam)  # the same process: it reads the registry again
    with session_scope(cam.db_url) as session:
        registry.rollback(session, "cam", "bob", "missed a crack")
    third = _frames(tmp_path, cam, 2, seed=5, folder="c")
    process_frames(third, cam)

    by_frame: dict[int, set[tuple[str, bool]]] = {}
    for frame, version, shadow, _ in _results(cam):
        by_frame.setdefault(frame, set()).add((version, shadow))
    for i in first:
        assert by_frame[i] == {(configured.version, False), (candidate.version, True)}
    for i in second:  # promoted: the candidate is live, and no candidate is left to shadow it
        assert by_frame[i] == {(candidate.version, False)}
    for i in third:  # rolled back: the configured model again
        assert by_frame[i] == {(configured.version, False)}


def test_a_watcher_takes_up_a_promotion_while_it_runs(
    tmp_path: Path, cam: Settings, tiny_candidate: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    candidate = _register(cam, tiny_candidate)
    watcher = Watcher(incoming, cam)
    with running(watcher):
        write_frames(incoming, 2, seed=3, prefix="early-")
        until(lambda: counts(cam.db_url)[0] == 4, 30)
        with session_scope(cam.db_url) as session:
            registry.promote(session, "cam", who="ada")
        write_frames(incoming, 2, seed=4, prefix="late-")
        until(lambda: counts(cam.db_url)[1].get("done") == 4, 30)
    live_versions = [version for _, version, shadow, _ in _results(cam) if not shadow]
    assert live_versions[-2:] == [candidate.version] * 2
    assert candidate.version not in live_versions[:2]


def test_a_broken_candidate_never_holds_up_scoring_but_a_broken_live_model_does(
    tmp_path: Path,
    cam: Settings,
    tiny_checkpoint: Path,
    tiny_candidate: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    copy = tmp_path / "candidate.pt"
    copy.write_bytes(tiny_candidate.read_bytes())
    _register(cam, copy)
    copy.write_bytes(tiny_checkpoint.read_bytes())  # another model under the registered name
    ids = _frames(tmp_path, cam, 2, seed=3)
    with caplog.at_level(logging.WARNING):
        assert process_frames(ids, cam).done == 2
    assert "is not scored" in caplog.text and "as the registry says" in caplog.text
    assert [shadow for _, _, shadow, _ in _results(cam)] == [False, False]

    # The live model's file holding another model: nothing is scored under the wrong version.
    with session_scope(cam.db_url) as session:
        registry.promote(session, "cam", who="ada")
    more = _frames(tmp_path, cam, 2, seed=4, folder="b")
    with pytest.raises(CheckpointError, match="as the registry says"):
        process_frames(more, cam)
    assert counts(cam.db_url)[1].get("queued") == 2  # handed back, for when the file is put right


@pytest.mark.services
def test_live_and_shadow_results_in_one_commit_on_postgresql(
    tmp_path: Path, cam: Settings, pg_url: str, tiny_candidate: Path
) -> None:
    """PostgreSQL inserts a batch's results over arrays: live and shadow rows of the same frames
    in one statement, each result with its own maps."""
    from inspector.store import migrate

    cam.database_url = pg_url
    migrate.upgrade(pg_url)
    live = get_detector(cam)
    candidate = _register(cam, tiny_candidate)
    ids = _frames(tmp_path, cam, 4, seed=3)
    assert process_frames(ids, cam).done == 4
    rows = _results(cam)
    assert sorted((version, shadow) for _, version, shadow, _ in rows) == sorted(
        [(live.version, False)] * 4 + [(candidate.version, True)] * 4
    )
    with session_scope(pg_url) as session:
        maps = session.execute(select(ResultMap.result_id, func.count()).group_by(ResultMap.result_id)).all()
        assert len(maps) == 8 and {n for _, n in maps} == {5}
