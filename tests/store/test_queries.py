"""The invariants the pipeline leans on: compare-and-set claims, one result per frame, model and method."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from inspector.store import queries
from inspector.store.db import get_engine, session_scope
from inspector.store.models import Base, Result, utcnow
from tests.store.rows import frame_by_hash, insert_result, register_frames, register_model


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    Base.metadata.create_all(get_engine(url))
    with session_scope(url) as session:
        register_model(session)
    return url


@pytest.fixture
def pg_queries_url(pg_url: str) -> str:
    Base.metadata.create_all(get_engine(pg_url))
    with session_scope(pg_url) as session:
        register_model(session)
    return pg_url


def _frames(url: str, n: int) -> list[int]:
    with session_scope(url) as session:
        return register_frames(session, n)


def test_insert_frame_deduplicates_by_content(url: str) -> None:
    (first,) = _frames(url, 1)
    assert first is not None
    assert _frames(url, 1) == [None]
    with session_scope(url) as session:
        assert frame_by_hash(session, f"{0:064x}").id == first


def test_a_frame_is_claimed_once_until_its_lease_runs_out(url: str) -> None:
    ids = _frames(url, 3)
    now = utcnow()
    with session_scope(url) as session:
        assert list(queries.claim_frames(session, ids, lease_before=now - timedelta(seconds=10))) == ids
    with session_scope(url) as session:
        assert list(queries.claim_frames(session, ids, lease_before=now - timedelta(seconds=10))) == []
        # A claim not renewed since lease_before belongs to a dead worker: it may be taken over.
        later = utcnow() + timedelta(seconds=1)
        assert list(queries.claim_frames(session, ids[:1], lease_before=later)) == ids[:1]
        assert queries.frames_by_id(session, ids[:1])[0].attempts == 2


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_claims_lapse_by_the_database_clock_not_a_hosts(
    database: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose host's clock runs a minute behind the watcher's claims frames: the watcher
    must not see those claims as lapsed (and hand the frames out again, and again) while the
    worker renews them, since both measure claims by the database's clock."""
    url = request.getfixturevalue("url" if database == "sqlite" else "pg_queries_url")
    ids = _frames(url, 2)
    monkeypatch.setattr(queries, "utcnow", lambda: utcnow() - timedelta(minutes=1))  # the worker's host
    with session_scope(url) as session:
        lease_before = queries.database_time(session) - timedelta(seconds=10)
        assert list(queries.claim_frames(session, ids, lease_before, claimant="task-1")) == ids
    with session_scope(url) as session:
        assert queries.renew_claims(session, ids, "task-1") == 2
    monkeypatch.undo()
    with session_scope(url) as session:  # the watcher's recover
        now = queries.database_time(session)
        assert abs(now - utcnow()) < timedelta(seconds=5)
        assert queries.queue_waiting(session, now, now - timedelta(seconds=10)) == []
        assert queries.queue_waiting(session, now, now + timedelta(seconds=1)) == ids  # lapsed


def test_a_renewed_claim_is_not_taken_over(url: str) -> None:
    ids = _frames(url, 2)
    with session_scope(url) as session:
        queries.claim_frames(session, ids, utcnow(), claimant="task-1")
        session.execute(text("UPDATE frames SET updated_at=:t"), {"t": utcnow() - timedelta(minutes=1)})
    with session_scope(url) as session:
        assert queries.renew_claims(session, ids[:1], "task-1") == 1
        assert queries.renew_claims(session, ids[1:], "task-2") == 0  # not its claim
    with session_scope(url) as session:
        lease_before = utcnow() - timedelta(seconds=10)
        assert list(queries.claim_frames(session, ids, lease_before, claimant="task-3")) == ids[1:]


def test_a_redelivery_resumes_its_own_claim_at_once(url: str) -> None:
    ids = _frames(url, 2)
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope(url) as session:
        assert list(queries.claim_frames(session, ids, long_ago, claimant="task-1")) == ids
    with session_scope(url) as session:
        assert list(queries.claim_frames(session, ids, long_ago, claimant="task-2")) == []
        assert queries.claim_frames(session, ids, long_ago, claimant="task-1") == {i: 2 for i in ids}


def test_finish_is_compare_and_set(url: str) -> None:
    (fid,) = _frames(url, 1)
    with session_scope(url) as session:
        queries.claim_frames(session, [fid], utcnow())
        assert queries.finish_frame(session, fid, "done", "archive/x.png")
        assert not queries.finish_frame(session, fid, "quarantined", "quarantine/x.png", "late")
        frame = queries.frames_by_id(session, [fid])[0]
        assert (frame.status, frame.stored_path, frame.error) == ("done", "archive/x.png", None)


def test_result_insert_is_idempotent_per_method(url: str) -> None:
    """A frame scored again by the same model and method keeps its first result; another method of
    the same checkpoint scores on another scale, so its result is a result of its own."""
    (fid,) = _frames(url, 1)
    values = dict(frame_id=fid, model_version="m1", score=0.7, threshold=0.5, is_anomaly=True)
    with session_scope(url) as session:
        assert insert_result(session, **values)
    with session_scope(url) as session:
        assert not insert_result(session, **(values | {"score": 0.1}))
        assert session.scalar(select(func.count()).select_from(Result)) == 1
        register_model(session, method="vaegan")
        assert insert_result(session, **(values | {"method": "vaegan", "score": 0.1}))
        assert sorted(tuple(row) for row in session.execute(select(Result.method, Result.score))) == [
            ("vaegan", 0.1),
            ("vaegan-attn", 0.7),
        ]


def test_queue_waiting_takes_pending_and_orphaned_in_flight_frames(url: str) -> None:
    ids = _frames(url, 6)
    now = utcnow()
    rows = [("processing", now - timedelta(minutes=1)), ("queued", now), ("done", now)]
    rows += [("processing", now), ("queued", now - timedelta(minutes=11))]
    with session_scope(url) as session:
        for i, (status, at) in zip(ids, rows, strict=False):
            session.execute(
                text("UPDATE frames SET status=:s, updated_at=:t WHERE id=:i"), {"s": status, "t": at, "i": i}
            )
    with session_scope(url) as session:
        queued = queries.queue_waiting(session, now - timedelta(minutes=10), now - timedelta(seconds=10))
    # A lapsed claim, a message queued long ago, a pending frame; the recently queued, the
    # recently renewed and the done frames stay as they are.
    assert queued == [ids[0], ids[4], ids[5]]


def test_poison_frames_are_given_up(url: str) -> None:
    ids = _frames(url, 2)
    old = utcnow() - timedelta(hours=1)
    with session_scope(url) as session:
        session.execute(
            text("UPDATE frames SET status='processing', attempts=3, updated_at=:t WHERE id=:i"),
            {"t": old, "i": ids[0]},
        )
    with session_scope(url) as session:
        before = utcnow() - timedelta(minutes=1)
        lost = queries.give_up_frames(session, before, before, max_attempts=3)
    assert [f.id for f in lost] == [ids[0]]
    assert lost[0].status == "quarantined" and "3 attempts" in lost[0].error


def test_report_queries_search_indexes_instead_of_scanning(url: str) -> None:
    """Every report query starts from an index (time, flag or source), never a full table scan."""
    from sqlalchemy import event

    engine = get_engine(url)
    executed: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT"):
            executed.append((statement, parameters))

    since = utcnow() - timedelta(hours=2)
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with session_scope(url) as session:
            for flagged, source in ((False, None), (True, None), (False, "cam"), (True, "cam")):
                queries.report_rows(session, since, flagged=flagged, source=source)
                queries.report_scores(session, since, flagged=flagged, source=source)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(executed) == 8
    with engine.connect() as connection:
        for statement, parameters in executed:
            plan = [
                row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
            assert not [step for step in plan if step.startswith("SCAN")], (statement, plan)


def test_maps_count_the_bytes_the_database_keeps(pg_queries_url: str) -> None:
    """Retention's budget counts a map as stored: compressed on PostgreSQL (LZ4 since migration
    0013), and read from its header, not decompressed."""
    from inspector.store import operations

    (fid,) = _frames(pg_queries_url, 1)
    with session_scope(pg_queries_url) as session:
        assert insert_result(
            session,
            frame_id=fid,
            model_version="m1",
            score=0.1,
            threshold=0.5,
            is_anomaly=False,
            maps={"error": bytes(40_000)},
        )
    with session_scope(pg_queries_url) as session:
        assert 0 < operations.stored_bytes(session)[1] < 4_000
