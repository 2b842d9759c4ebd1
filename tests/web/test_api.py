"""The JSON API, the probes, /metrics and the OpenAPI pages over the seeded dashboard database."""

from __future__ import annotations

import dataclasses

from alembic import command
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from inspector.config import ApiSettings, ServerSettings
from inspector.store import migrate
from inspector.store.db import session_scope
from inspector.store.models import Review, ThresholdChange
from inspector.web import create_app
from tests.web.conftest import METHOD, TOKEN, Seeded

WRITER = {"Authorization": f"Bearer {TOKEN}"}


def everything(client: TestClient, query: str = "", limit: int = 7) -> list[dict]:
    """Every page of /api/v1/results, following next_cursor."""
    items, cursor = [], None
    while True:
        page = client.get(f"/api/v1/results?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_results_paging_and_filters(client: TestClient, seeded: Seeded) -> None:
    items = everything(client)
    assert [i["id"] for i in items] == sorted(seeded.result_ids, reverse=True)  # newest first, each once
    assert len(everything(client, "&flagged=true")) == 19  # scores above 0.5
    cam_a = everything(client, "&source=cam-a&reviewed=true")
    assert {i["frame_id"] for i in cam_a} == {
        seeded.frame_ids[i] for i in (0, 2, 4, 6, 8, 14, 30, 32, 34, 38)
    }
    assert {i["label"] for i in cam_a} == {"anomaly", "normal"}
    window = everything(client, "&score_min=0.5&score_max=0.6&reviewed=false")
    assert sorted(round(i["score"], 4) for i in window) == [0.5225, 0.545, 0.5675, 0.59]
    assert everything(client, "&model_version=v2") == []
    assert everything(client, "&method=vae") == []
    assert {(i["model_version"], i["method"]) for i in everything(client, f"&method={METHOD}")} == {
        ("v1", METHOD)
    }
    top = items[0]
    assert top["url"] == f"http://testserver/results/{top['id']}" and top["pruned"] is False
    assert client.get("/api/v1/results?cursor=nonsense").status_code == 400
    assert client.get("/api/v1/results?limit=0").status_code == 422


def test_one_result_with_map_links(client: TestClient, seeded: Seeded) -> None:
    rid = seeded.result_ids[38]
    body = client.get(f"/api/v1/results/{rid}").json()
    assert body["frame_id"] == seeded.frame_ids[38] and body["label"] == "anomaly"
    assert body["maps"]["attention"] == f"http://testserver/maps/{rid}/attention.png"
    assert client.get(body["maps"]["error"]).headers["content-type"] == "image/png"
    assert [r["reviewer"] for r in body["reviews"]] == ["seed"]
    missing = client.get("/api/v1/results/999999")
    assert missing.status_code == 404 and missing.json() == {"detail": "No result 999999."}


def test_reviews_need_the_writer_token_and_are_idempotent(client: TestClient, seeded: Seeded) -> None:
    rid = seeded.result_ids[39]
    review = {"label": "anomaly", "reviewer": "Ada", "note": "scratch"}
    assert client.post(f"/api/v1/results/{rid}/reviews", json=review).status_code == 401
    wrong = client.post(
        f"/api/v1/results/{rid}/reviews", json=review, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    first = client.post(f"/api/v1/results/{rid}/reviews", json=review, headers=WRITER)
    assert first.status_code == 201 and first.json()["label"] == "anomaly"
    again = client.post(f"/api/v1/results/{rid}/reviews", json=review, headers=WRITER)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]  # a retry adds nothing
    changed = client.post(f"/api/v1/results/{rid}/reviews", json=review | {"label": "normal"}, headers=WRITER)
    assert changed.status_code == 201
    with session_scope(seeded.settings.db_url) as session:
        count = session.scalar(
            select(func.count()).select_from(Review).where(Review.frame_id == seeded.frame_ids[39])
        )
    assert count == 2
    bad = client.post(f"/api/v1/results/{rid}/reviews", json=review | {"label": "maybe"}, headers=WRITER)
    assert bad.status_code == 422


def test_thresholds_through_the_audited_owner(client: TestClient, seeded: Seeded) -> None:
    assert client.get("/api/v1/thresholds").json() == [
        {"model_version": "v1", "method": METHOD, "source": "*", "value": 0.5, "updated_by": None}
    ]
    change = {"value": 0.2975, "by": "Ada", "reason": "calibrated"}
    assert client.put("/api/v1/thresholds/cam-a", json=change).status_code == 401
    body = client.put("/api/v1/thresholds/cam-a", json=change, headers=WRITER).json()
    assert (body["old_value"], body["new_value"], body["verdicts_changed"]) == (0.5, 0.2975, 5)
    assert (body["model_version"], body["method"]) == ("v1", METHOD)
    with session_scope(seeded.settings.db_url) as session:
        audit = session.scalars(select(ThresholdChange)).one()
    assert (audit.changed_by, audit.reason) == ("Ada", "calibrated")
    assert client.get("/api/v1/thresholds").json()[1]["source"] == "cam-a"
    unknown = client.put("/api/v1/thresholds/cam-a", json=change | {"model_version": "v9"}, headers=WRITER)
    assert unknown.status_code == 400 and "unknown model version" in unknown.json()["detail"]


def test_reads_need_a_token_when_one_is_set(seeded: Seeded) -> None:
    settings = dataclasses.replace(seeded.settings, api=ApiSettings(read_token="reader"))
    client = TestClient(create_app(settings))
    assert client.get("/api/v1/status").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/api/v1/status", headers={"Authorization": "Bearer reader"}).status_code == 200
    assert client.get("/api/v1/results", headers=WRITER).status_code == 200  # the writer may read
    reader = {"Authorization": "Bearer reader"}
    assert (
        client.put("/api/v1/thresholds/cam-a", json={"value": 1, "by": "x"}, headers=reader).status_code
        == 401
    )
    for _ in range(4):
        client.get("/api/v1/status", headers={"Authorization": "Bearer guess"})
    throttled = client.get("/api/v1/status", headers={"Authorization": "Bearer guess"})
    assert throttled.status_code == 429 and "retry-after" in throttled.headers


def test_beyond_loopback_reads_need_a_token_and_probes_stay_open(seeded: Seeded) -> None:
    """Bound beyond loopback, pages need a login and the machines' reads a token (as pages do,
    without a cookie); the probes answer anyone, and the API docs are a page like the others."""
    settings = dataclasses.replace(seeded.settings, server=ServerSettings(host="0.0.0.0", token=TOKEN))
    client = TestClient(create_app(settings))
    for path in ("/api/v1/results", "/api/v1/status", "/api/v1/thresholds", "/metrics"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
        assert client.get(path, headers=WRITER).status_code == 200, path
    assert client.get("/docs").status_code == 401 and client.get("/openapi.json").status_code == 401
    assert (
        client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 503
    )  # no Alembic
    assert client.get("/favicon.ico", follow_redirects=False).status_code == 301
    reader = dataclasses.replace(settings, api=ApiSettings(read_token="reader"))
    assert (
        TestClient(create_app(reader)).get("/metrics", headers={"Authorization": "Bearer reader"}).status_code
        == 200
    )
    loopback = dataclasses.replace(settings, server=ServerSettings(host="127.0.0.1", token=TOKEN))
    assert TestClient(create_app(loopback)).get("/api/v1/results").status_code == 200


def test_status_probes_and_metrics(client: TestClient, seeded: Seeded) -> None:
    status = client.get("/api/v1/status").json()
    assert status["to_review"] == 15 and status["model"] == {"version": "v1", "method": "vaegan-attn"}
    assert status["ok"] is False and "inspector db upgrade" in status["problems"][0]  # made without Alembic
    assert client.get("/healthz").json() == {"status": "ok"}
    unready = client.get("/readyz")
    assert unready.status_code == 503 and unready.json()["checks"]["database"] == "ok"
    command.stamp(migrate.alembic_config(seeded.settings.db_url), "head")  # as if migrated: ready
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families["inspector_review_queue_frames"].samples[0].value == 15
    assert {s.labels["status"]: s.value for s in families["inspector_queue_frames"].samples} == {
        "pending": 0,
        "queued": 0,
        "processing": 0,
    }
    assert families["inspector_model_info"].samples[0].labels["version"] == "v1"
    assert client.get("/favicon.ico", follow_redirects=False).headers["location"] == "/static/favicon.svg"
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg")


def test_openapi_documents_the_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {
        "/api/v1/results",
        "/api/v1/results/{result_id}",
        "/api/v1/results/{result_id}/reviews",
        "/api/v1/thresholds",
        "/api/v1/thresholds/{source}",
        "/api/v1/status",
    }
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "ResultPage" in schema["components"]["schemas"]
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs/swagger-ui-bundle.js" in page.text
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs/other.js").status_code == 422
