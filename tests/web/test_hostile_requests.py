"""Requests no page would send: ids beyond any column, NUL bytes, cursors out of range. Each is a
4xx that says what was wrong, never a 500, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inspector.store.models import MAX_ID
from inspector.web import create_app
from tests.web.conftest import TOKEN, Seeded, csrf_of, seed


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def hostile(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Seeded]]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    seeded = seed(tmp_path / "data", database_url=url)
    yield TestClient(create_app(seeded.settings), raise_server_exceptions=False), seeded


BEYOND = (2**31, MAX_ID, MAX_ID + 1, 2**64, 10**30)


@pytest.mark.parametrize("ident", BEYOND)
def test_ids_beyond_any_row_are_not_found_or_refused(hostile: tuple[TestClient, Seeded], ident: int) -> None:
    client, _ = hostile
    for path in (f"/results/{ident}", f"/maps/{ident}/error.png", f"/api/v1/results/{ident}"):
        response = client.get(path)
        assert response.status_code in (404, 422), (path, response.status_code)
    for cursor in ("after", "before"):
        response = client.get(f"/queue?{cursor}=0.5:{ident}")
        assert response.status_code in (200, 400), (cursor, response.status_code)


def test_a_cursor_beyond_any_id_or_not_a_number_is_a_bad_request(hostile: tuple[TestClient, Seeded]) -> None:
    client, _ = hostile
    for raw in (f"0.5:{MAX_ID + 1}", "nan:3", "inf:3", "0.5:-1"):
        assert client.get(f"/queue?after={raw}").status_code == 400, raw
    import base64
    import json

    cursor = base64.urlsafe_b64encode(json.dumps({"before": 2**64}).encode()).decode().rstrip("=")
    assert client.get(f"/api/v1/results?cursor={cursor}").status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/queue?source=%00",
        "/queue?source=cam%00a",
        "/queue/rows?model_version=%00",
        "/results/1?source=%00",
        "/api/v1/results?source=%00",
        "/api/v1/results?model_version=a%00b",
        "/calibration?source=%00",
        "/queue?%00=1",
    ],
)
def test_nul_bytes_in_a_query_are_a_bad_request(hostile: tuple[TestClient, Seeded], path: str) -> None:
    client, _ = hostile
    response = client.get(path)
    assert response.status_code == 400 and "NUL" in response.text, (path, response.status_code)


def test_nul_bytes_in_a_form_or_a_json_body_are_refused(hostile: tuple[TestClient, Seeded]) -> None:
    client, seeded = hostile
    rid = seeded.result_ids[30]
    csrf = csrf_of(client)
    response = client.post("/login", data={"csrf": csrf, "token": TOKEN, "name": "Ev\x00e"})
    assert response.status_code == 400
    client.post("/login", data={"csrf": csrf, "token": TOKEN, "name": "Eve"})
    response = client.post(
        f"/results/{rid}/review",
        data={"csrf": csrf_of(client, "/queue"), "label": "normal", "note": "a\x00b"},
    )
    assert response.status_code == 400
    writer = {"Authorization": f"Bearer {TOKEN}"}
    body = {"label": "normal", "reviewer": "bot", "note": "a\x00b"}
    assert client.post(f"/api/v1/results/{rid}/reviews", json=body, headers=writer).status_code == 422
    body = {"label": "normal", "reviewer": "b\x00t"}
    assert client.post(f"/api/v1/results/{rid}/reviews", json=body, headers=writer).status_code == 422


@pytest.mark.services
def test_postgresql_ids_go_beyond_32_bits(tmp_path: Path, pg_url: str) -> None:
    """A frame, its result and maps, and a review past 2^31 are stored and shown (migration 0008)."""
    from sqlalchemy import text

    from inspector.store import migrate
    from inspector.store.db import session_scope
    from inspector.store.models import Frame, Result, ResultMap, Review, utcnow
    from tests.web.conftest import METHOD, png

    migrate.upgrade(pg_url)
    seeded = seed(tmp_path / "data", database_url=pg_url)
    now = utcnow()
    with session_scope(pg_url) as session:
        for table in ("frames", "results", "reviews"):
            session.execute(text(f"SELECT setval('{table}_id_seq', {2**40})"))
        frame = Frame(content_hash="f" * 64, path="/in/late.png", size_bytes=1, landed_at=now, status="done")
        session.add(frame)
        session.flush()
        result = Result(
            frame_id=frame.id, model_version="v1", method=METHOD, score=0.9, threshold=0.5, is_anomaly=True
        )
        session.add(result)
        session.flush()
        session.add_all([ResultMap(result_id=result.id, kind=k, png=png(1)) for k in ("input", "error")])
        session.add(Review(frame_id=frame.id, label="anomaly", reviewer="seed"))
        ids = frame.id, result.id
    assert min(ids) > 2**40
    client = TestClient(create_app(seeded.settings))
    assert client.get(f"/results/{ids[1]}").status_code == 200
    assert client.get(f"/maps/{ids[1]}/error.png").status_code == 200
    body = client.get(f"/api/v1/results/{ids[1]}").json()
    assert body["frame_id"] == ids[0] and body["label"] == "anomaly"
