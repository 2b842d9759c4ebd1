"""The batched statements of the scoring step, on SQLite and PostgreSQL: claims, inserts, updates;
and calibration's read of every labelled score."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from inspector.store import queries, review
from inspector.store.db import get_engine, session_scope
from inspector.store.models import Base, Frame, Result, ResultMap, utcnow
from tests.store.rows import frame_by_hash, register_frames, register_model


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    Base.metadata.create_all(get_engine(url))
    with session_scope(url) as session:
        register_model(session)
    return url


RESULT = dict(model_version="m1", method="vaegan-attn", score=0.1, threshold=0.5, is_anomaly=False)


def _registered(url: str, n: int) -> list[int]:
    with session_scope(url) as session:
        return register_frames(session, n)


def _claimed(url: str, n: int) -> list[int]:
    ids = _registered(url, n)
    with session_scope(url) as session:
        assert list(queries.claim_frames(session, ids, utcnow())) == ids
    return ids


def test_finish_frames_sets_each_stored_path_and_skips_frames_already_closed(url: str) -> None:
    a, b, c = _claimed(url, 3)
    with session_scope(url) as session:
        assert queries.finish_frame(session, c, "quarantined", "quarantine/c.png", "bad")
        closed = queries.finish_frames(session, "done", {a: "archive/a.png", b: None, c: "archive/c.png"})
        assert closed == [a, b]
        rows = session.execute(select(Frame.id, Frame.status, Frame.stored_path).order_by(Frame.id)).all()
    assert [tuple(r) for r in rows] == [
        (a, "done", "archive/a.png"),
        (b, "done", None),
        (c, "quarantined", "quarantine/c.png"),
    ]
    with session_scope(url) as session:
        assert queries.finish_frames(session, "done", {}) == []


def test_insert_results_stores_a_batch_and_its_maps_once(url: str) -> None:
    ids = _claimed(url, 3)
    rows = [dict(RESULT, frame_id=i, maps={"error": bytes([i])}) for i in ids]
    with session_scope(url) as session:
        assert queries.insert_results(session, rows[:2]) == 2
    rows[0]["maps"] = {"error": b"scored again"}
    with session_scope(url) as session:
        assert queries.insert_results(session, rows) == 1  # the first two are already stored
        assert sorted(session.scalars(select(Result.frame_id))) == ids
        maps = session.execute(select(Result.frame_id, ResultMap.png).join(Result)).all()
    assert sorted(tuple(m) for m in maps) == [(i, bytes([i])) for i in ids]  # the first maps kept


def test_claim_next_takes_the_oldest_waiting_frames_once(url: str) -> None:
    ids = _registered(url, 40)
    with session_scope(url) as session:
        session.execute(update(Frame).where(Frame.id == ids[1]).values(status="queued"))
        session.execute(update(Frame).where(Frame.id == ids[2]).values(attempts=3))  # gave up on
        session.execute(update(Frame).where(Frame.id == ids[3]).values(status="done"))
    with session_scope(url) as session:
        assert queries.claim_next(session, 3) == [ids[0], ids[1], ids[4]]
    # Scorers pulling side by side never take the same frame.
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda _: _pull_all(url), range(4)))
    taken = [i for claim in claims for i in claim]
    assert sorted(taken) == ids[5:] and len(set(taken)) == len(taken)


def test_a_claim_of_too_few_fresh_frames_waits_for_more(url: str) -> None:
    """Fewer than a forward pass's worth (fill), all registered within the gathering time, are
    left to gather; once the oldest has waited long enough, or enough wait, they are taken, in
    whole forward passes."""
    ids = _registered(url, 3)
    with session_scope(url) as session:
        registered = session.scalar(select(Frame.registered_at).where(Frame.id == ids[0]))
        early, late = registered - timedelta(seconds=1), registered + timedelta(seconds=1)
        assert queries.claim_next(session, 8, fill=4, gather_before=early) == []
        assert queries.claim_next(session, 8, fill=3, gather_before=early) == ids
    with session_scope(url) as session:
        more = register_frames(session, 2, first=3)
        assert queries.claim_next(session, 8, fill=4, gather_before=early) == []
        assert queries.claim_next(session, 8, fill=4, gather_before=late) == more
        rest = register_frames(session, 5, first=5)
        assert queries.claim_next(session, 8, fill=2, gather_before=early) == rest[:4]
        assert queries.claim_next(session, 8, fill=2, gather_before=late) == rest[4:]


def test_a_frame_tried_before_is_a_suspect_claimed_alone_without_counting(url: str) -> None:
    """A scorer died holding ids[1] and ids[2] (one attempt each): the scorers' pull leaves them
    to a process of their own, which takes them one at a time, counting no attempt (its death,
    seen by the watcher, counts: blame); ids[3] was given up on."""
    ids = _registered(url, 6)
    with session_scope(url) as session:
        session.execute(update(Frame).where(Frame.id.in_(ids[1:3])).values(status="queued", attempts=1))
        session.execute(update(Frame).where(Frame.id == ids[3]).values(status="queued", attempts=3))
    with session_scope(url) as session:
        assert queries.claim_next(session, 4) == [ids[0], *ids[4:]]
        assert queries.has_suspects(session, max_attempts=3)
        assert queries.claim_suspect(session, 3, "isolated-1") == ids[1]
        assert queries.claim_suspect(session, 3, "isolated-1") == ids[2]
        assert queries.claim_suspect(session, 3, "isolated-1") is None
        assert [f.id for f in queries.claimed_by(session, "isolated-1")] == ids[1:3]
    with session_scope(url) as session:
        frames = {f.id: f for f in session.scalars(select(Frame))}
    assert [(frames[i].status, frames[i].attempts) for i in ids] == [
        ("processing", 1),
        ("processing", 1),
        ("processing", 1),
        ("queued", 3),
        ("processing", 1),
        ("processing", 1),
    ]


def _pull_all(url: str) -> list[int]:
    taken: list[int] = []
    while True:
        with session_scope(url) as session:
            claimed = queries.claim_next(session, 4)
        if not claimed:
            return taken
        taken += claimed


def test_insert_frames_registers_each_content_once(url: str) -> None:
    row = dict(source="cam", size_bytes=1, landed_at=utcnow())
    rows = [
        dict(row, content_hash="a" * 64, path="/in/a.png"),
        dict(row, content_hash="b" * 64, path="/in/b.png"),
        dict(row, content_hash="a" * 64, path="/in/copy-of-a.png"),  # same content, same call
    ]
    with session_scope(url) as session:
        new = queries.insert_frames(session, rows)
    assert sorted(new) == ["/in/a.png", "/in/b.png"]
    with session_scope(url) as session:
        assert queries.insert_frames(session, [dict(row, content_hash="b" * 64, path="/in/b2.png")]) == {}
        assert frame_by_hash(session, "a" * 64).id == new["/in/a.png"]


def test_labelled_frames_take_each_frames_latest_label_by_the_drivers_rows(url: str) -> None:
    """Calibration's read (the driver's own tuples, positional on SQLite, named on PostgreSQL):
    the latest label of each reviewed frame scored by the model and method, of a source, or only
    what changed since (review id, result id)."""
    with session_scope(url) as session:
        register_model(session, method="vae")
        a, b, c, d = register_frames(session, 4)
        (e,) = register_frames(session, 1, source="other", first=4)
        for frame, score in ((a, 0.1), (b, 0.2), (c, 0.3), (e, 0.5)):
            queries.insert_results(session, [dict(RESULT, frame_id=frame, score=score)])
        queries.insert_results(session, [dict(RESULT, frame_id=a, method="vae", score=9.0)])
        for frame, label in ((a, "normal"), (a, "anomaly"), (b, "anomaly"), (b, "normal"), (d, "anomaly")):
            review.add_review(session, frame, label, "Ada")
        review.add_review(session, e, "anomaly", "Ada")
        stamp = review.labels_stamp(session)

    def read(**options: object) -> list[tuple[int, float, bool]]:
        with session_scope(url) as session:
            rows = review.labelled_frames(session, "m1", "vaegan-attn", **options)
        return sorted((frame, score, bool(anomaly)) for frame, score, anomaly in rows)

    assert read() == [(a, 0.1, True), (b, 0.2, False), (e, 0.5, True)]  # c unlabelled, d unscored
    assert read(source="cam") == [(a, 0.1, True), (b, 0.2, False)]
    with session_scope(url) as session:
        review.add_review(session, b, "anomaly", "Ada")
        review.add_review(session, c, "normal", "Ada")
    assert read(since=(stamp.review_id, stamp.result_id)) == [(b, 0.2, True), (c, 0.3, False)]
