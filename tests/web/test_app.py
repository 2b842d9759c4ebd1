"""HTTP-level tests of every dashboard endpoint over a seeded database (see conftest)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import itsdangerous
import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from inspector.config import ServerSettings
from inspector.maps import MAP_KINDS, decode_png, picture
from inspector.store.db import session_scope
from inspector.store.models import Model, Result, ResultMap, Review, ThresholdChange
from inspector.store.review import result_maps
from inspector.web import create_app, security
from inspector.web.routes.calibration import as_submitted
from tests.web.conftest import METHOD, SUGGESTED, TOKEN, Seeded, csrf_of, seed

FLAGGED_UNREVIEWED = 15  # scores > 0.5 are frames 21…39; 30, 32, 34 and 38 are labelled


def queue_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def count_badge(html: str) -> int:
    return int(re.search(r'id="queue-count">(\d+)<', html).group(1))


def test_health_home_and_security_headers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.json() == {"status": "ok"}
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert client.get("/", follow_redirects=False).headers["location"] == "/queue"


def test_queue_lists_flagged_unreviewed_highest_first(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/queue").text
    ids = queue_ids(html)
    assert count_badge(html) == len(ids) == FLAGGED_UNREVIEWED
    assert ids[0] == seeded.result_ids[39] and ids[-1] == seeded.result_ids[21]
    assert seeded.result_ids[38] not in ids  # labelled
    assert seeded.result_ids[20] not in ids  # below the threshold


@pytest.mark.parametrize(
    ("query", "expected"),  # expected: seed frame indexes, highest score first
    [
        ("source=cam-a", [36, 28, 26, 24, 22]),
        ("score_min=0.8&score_max=0.9", [37, 36, 35]),
        ("model_version=v1&source=cam-b&score_max=0.6", [23, 21]),
        ("model_version=v2", []),
        ("model_version=v1&method=vaegan-attn&source=cam-b&score_max=0.6", [23, 21]),
        ("method=vaegan", []),
        ("start=2000-01-01T00:00&end=2000-01-02T00:00", []),
        ("all=1&source=cam-a&score_max=0.4", [12, 10]),  # unflagged too; 14 and 0…8 are labelled
    ],
)
def test_queue_filters(client: TestClient, seeded: Seeded, query: str, expected: list[int]) -> None:
    assert queue_ids(client.get(f"/queue?{query}").text) == [seeded.result_ids[i] for i in expected]


def test_queue_rejects_bad_filters(client: TestClient) -> None:
    assert client.get("/queue?score_min=lots").status_code == 400
    assert client.get("/queue?start=yesterday").status_code == 400
    assert client.get("/queue?after=nonsense").status_code == 400


def test_queue_rows_fragment_for_live_updates(client: TestClient, seeded: Seeded) -> None:
    response = client.get("/queue/rows?source=cam-b")
    assert response.headers["x-queue-count"] == "10"
    assert "<html" not in response.text
    assert queue_ids(response.text)[0] == seeded.result_ids[39]


def test_keyset_paging_walks_the_queue_once(seeded: Seeded) -> None:
    from inspector.store.review import QueueFilter, queue_page

    with session_scope(seeded.settings.db_url) as session:
        pages, after = [], None
        while True:
            page = queue_page(session, QueueFilter(), after=after, limit=4)
            pages.append([(r.score, r.id) for r in page.rows])
            if not page.has_next:
                break
            after = pages[-1][-1]
        seen = [key for keys in pages for key in keys]
        assert len(set(seen)) == FLAGGED_UNREVIEWED and seen == sorted(seen, reverse=True)
        back = queue_page(session, QueueFilter(), before=pages[2][0], limit=4)
        assert [(r.score, r.id) for r in back.rows] == pages[1] and back.has_prev and back.has_next
        top = queue_page(session, QueueFilter(), before=pages[1][0], limit=4)
        assert [(r.score, r.id) for r in top.rows] == pages[0] and not top.has_prev


def test_queue_pager_links(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inspector.web.routes.queue.PAGE_SIZE", 10)
    first = client.get("/queue?source=").text
    assert len(queue_ids(first)) == 10 and 'id="page-prev"' not in first
    next_url = re.search(r'id="page-next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url).text
    assert len(queue_ids(second)) == FLAGGED_UNREVIEWED - 10 and 'id="page-next"' not in second
    prev_url = re.search(r'id="page-prev" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    assert queue_ids(client.get(prev_url).text) == queue_ids(first)


def test_frame_view(client: TestClient, seeded: Seeded) -> None:
    result_id = seeded.result_ids[30]  # labelled anomaly by "seed"
    html = client.get(f"/results/{result_id}").text
    for kind in ("input", "reconstruction", "error", "attention", "anomaly"):
        assert f"/maps/{result_id}/{kind}.png" in html
    assert "what the score is made of" in html and f'<dd class="mono">{METHOD}</dd>' in html
    assert 'id="opacity"' in html and "0.725" in html and "seed" in html and "labelled anomaly" in html
    top = client.get(f"/results/{seeded.result_ids[39]}?source=cam-b").text
    assert f'href="/results/{seeded.result_ids[37]}?source=cam-b"' in top  # next in the filtered queue
    assert 'id="prev"' not in top
    assert client.get("/results/9999").status_code == 404


def test_maps_drawn_from_stored_planes(client: TestClient, seeded: Seeded) -> None:
    result_id = seeded.result_ids[0]
    with session_scope(seeded.settings.db_url) as session:
        stored = result_maps(session, result_id, MAP_KINDS)
    planes = {kind: decode_png(data) for kind, data in stored.items()}
    for kind in MAP_KINDS:
        response = client.get(f"/maps/{result_id}/{kind}.png")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        np.testing.assert_array_equal(decode_png(response.content), picture(kind, planes))
    assert decode_png(client.get(f"/maps/{result_id}/attention.png").content).shape == (32, 32, 3)
    assert client.get(f"/maps/{result_id}/secret.png").status_code == 404
    assert client.get("/maps/9999/input.png").status_code == 404
    with session_scope(seeded.settings.db_url) as session:  # a heat map needs its input too
        session.execute(delete(ResultMap).where(ResultMap.result_id == result_id, ResultMap.kind == "input"))
    assert client.get(f"/maps/{result_id}/error.png").status_code == 404
    assert client.get(f"/maps/{result_id}/reconstruction.png").status_code == 200
    assert "no input map" in client.get(f"/results/{result_id}").text


def reviews(seeded: Seeded) -> int:
    with session_scope(seeded.settings.db_url) as session:
        return session.scalar(select(func.count()).select_from(Review))


def test_review_refused_without_login(client: TestClient, seeded: Seeded) -> None:
    before = reviews(seeded)
    csrf = csrf_of(client)
    response = client.post(
        f"/results/{seeded.result_ids[39]}/review", data={"label": "anomaly", "csrf": csrf}
    )
    assert response.status_code == 401 and "Log in" in response.text
    assert reviews(seeded) == before


def test_review_refused_with_bad_csrf(logged_in: TestClient, seeded: Seeded) -> None:
    before = reviews(seeded)
    url = f"/results/{seeded.result_ids[39]}/review"
    assert logged_in.post(url, data={"label": "anomaly", "csrf": "forged"}).status_code == 403
    assert logged_in.post(url, data={"label": "anomaly"}).status_code == 403
    assert reviews(seeded) == before


def test_review_labels_and_moves_on(logged_in: TestClient, seeded: Seeded) -> None:
    csrf = csrf_of(logged_in)
    url = f"/results/{seeded.result_ids[39]}/review"
    response = logged_in.post(
        url,
        data={"label": "anomaly", "csrf": csrf, "q": "source=cam-b", "note": "scratch"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/results/{seeded.result_ids[37]}?source=cam-b"
    page = logged_in.get(response.headers["location"]).text
    assert "labelled anomaly" in page  # the one-off message
    assert count_badge(logged_in.get("/queue").text) == FLAGGED_UNREVIEWED - 1
    history = logged_in.get(f"/results/{seeded.result_ids[39]}").text
    assert "Ada" in history and "scratch" in history
    assert logged_in.post(url, data={"label": "maybe", "csrf": csrf}).status_code == 400
    assert logged_in.post("/results/9999/review", data={"label": "normal", "csrf": csrf}).status_code == 404


def test_last_review_returns_to_the_queue(logged_in: TestClient, seeded: Seeded) -> None:
    csrf = csrf_of(logged_in)
    response = logged_in.post(
        f"/results/{seeded.result_ids[21]}/review",
        data={"label": "normal", "csrf": csrf, "q": "score_max=0.55"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/queue?score_max=0.55"


def test_writes_refused_without_a_configured_token(tmp_path: Path) -> None:
    seeded = seed(tmp_path / "data", token="")
    client = TestClient(create_app(seeded.settings))
    csrf = csrf_of(client)
    login = client.post("/login", data={"csrf": csrf, "token": "", "name": "Eve"})
    assert login.status_code == 403 and "no login token is configured" in login.text
    review = client.post(f"/results/{seeded.result_ids[39]}/review", data={"label": "normal", "csrf": csrf})
    assert review.status_code == 403 and "Writes are disabled" in review.text
    assert "read-only" in client.get("/queue").text


def test_wrong_tokens_are_throttled_per_client() -> None:
    now = [0.0]
    throttle = security.LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        throttle.check("10.0.0.1")
        throttle.failed("10.0.0.1")
    with pytest.raises(HTTPException) as refused:
        throttle.check("10.0.0.1")
    assert refused.value.status_code == 429 and refused.value.headers == {"Retry-After": "60"}
    throttle.check("10.0.0.2")  # another client is not held off
    now[0] = 60.0
    throttle.check("10.0.0.1")  # the failures aged out


def test_login_refuses_after_five_wrong_tokens(client: TestClient) -> None:
    csrf = csrf_of(client, "/login")
    for _ in range(5):
        assert client.post("/login", data={"csrf": csrf, "token": "guess", "name": "Eve"}).status_code == 401
    refused = client.post("/login", data={"csrf": csrf, "token": TOKEN, "name": "Eve"})
    assert refused.status_code == 429 and "Too many wrong tokens" in refused.text
    assert int(refused.headers["Retry-After"]) > 0


def test_login_checks(client: TestClient) -> None:
    csrf = csrf_of(client, "/login")
    assert client.post("/login", data={"csrf": csrf, "token": "wrong", "name": "Eve"}).status_code == 401
    assert client.post("/login", data={"token": TOKEN, "name": "Eve"}).status_code == 403  # no CSRF
    assert client.post("/login", data={"csrf": csrf, "token": TOKEN, "name": "  "}).status_code == 400
    response = client.post(
        "/login",
        data={"csrf": csrf, "token": TOKEN, "name": "Eve", "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    assert "Eve" in client.get("/queue").text


def test_logout(logged_in: TestClient) -> None:
    assert logged_in.post("/logout", data={"csrf": "forged"}).status_code == 403
    response = logged_in.post("/logout", data={"csrf": csrf_of(logged_in)})
    assert response.status_code == 200 and "Ada" not in response.text and "Log in" in response.text


def test_calibration_page(client: TestClient) -> None:
    html = client.get("/calibration?source=cam-a&target=0.99").text
    assert "4 anomalies, 6 normal" in html
    assert re.search(r'id="suggested-threshold">([\d.]+)<', html).group(1) == f"{SUGGESTED:.4g}"
    assert html.count("<svg") == 3 and "ROC" in html and "AUC" in html
    assert client.get("/calibration?target=2").status_code == 400
    assert "Log in" in html and 'id="apply-form"' not in html


def test_calibration_without_data(tmp_path: Path) -> None:
    from inspector.store.db import get_engine
    from inspector.store.models import Base

    seeded = seed(tmp_path / "data")
    with session_scope(seeded.settings.db_url) as session:
        session.execute(Review.__table__.delete())
    client = TestClient(create_app(seeded.settings))
    assert "Label frames of both kinds" in client.get("/calibration").text
    empty = seeded.settings.__class__(data_dir=str(tmp_path / "empty"))
    Base.metadata.create_all(get_engine(empty.db_url))
    assert "No results yet" in TestClient(create_app(empty)).get("/calibration").text


def test_apply_threshold_refused_without_login_or_csrf(client: TestClient, logged_in: TestClient) -> None:
    data = {"source": "cam-a", "model_version": "v1", "method": METHOD, "value": "0.3"}
    fresh = TestClient(client.app)
    assert fresh.post("/calibration/apply", data=data | {"csrf": csrf_of(fresh)}).status_code == 401
    assert logged_in.post("/calibration/apply", data=data | {"csrf": "forged"}).status_code == 403


def test_apply_threshold_records_and_changes_verdicts(logged_in: TestClient, seeded: Seeded) -> None:
    csrf = csrf_of(logged_in)
    before = queue_ids(logged_in.get("/queue?source=cam-a").text)
    data = {
        "csrf": csrf,
        "source": "cam-a",
        "model_version": "v1",
        "method": METHOD,
        "value": repr(SUGGESTED),
        "target": "0.99",
    }
    response = logged_in.post("/calibration/apply", data=data | {"reason": "recall"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/calibration?")
    page = logged_in.get(response.headers["location"]).text
    assert "0.5 → 0.2975; 5 verdicts changed" in page and "Ada" in page
    with session_scope(seeded.settings.db_url) as session:
        change = session.scalars(select(ThresholdChange)).one()
        assert (change.source, change.old_value, change.new_value, change.changed_by, change.reason) == (
            "cam-a",
            0.5,
            SUGGESTED,
            "Ada",
            "recall",
        )
    after = queue_ids(logged_in.get("/queue?source=cam-a").text)
    assert set(after) - set(before) == {seeded.result_ids[i] for i in (12, 16, 18, 20)}
    assert len(queue_ids(logged_in.get("/queue?source=cam-b").text)) == 10  # other source untouched
    assert (
        'threshold now</dt><dd class="num">0.2975' in logged_in.get(f"/results/{seeded.result_ids[16]}").text
    )
    bad_values = (
        {"value": "nan"},
        {"source": "cam-z"},
        {"model_version": "v9"},
        {"method": "vae"},
        {"value": "high"},
    )
    for bad in bad_values:
        assert logged_in.post("/calibration/apply", data=data | bad).status_code in (400, 422)


def test_a_threshold_field_left_as_shown_submits_the_exact_threshold() -> None:
    exact = 1.4662764072418213
    assert f"{exact:.4g}" == "1.466"
    assert as_submitted(1.466, exact) == exact
    assert as_submitted(1.47, exact) == 1.47
    assert as_submitted(0.3, None) == 0.3


def test_overview(client: TestClient) -> None:
    html = client.get("/overview").text
    assert re.search(r'id="stat-frames">(\d+)<', html).group(1) == "40"
    assert re.search(r'id="stat-rate">([^<]+)<', html).group(1) == "47.5%"
    assert re.search(r'id="stat-backlog">(\d+)<', html).group(1) == "0"
    assert "inline" in html and "<svg" in html


def test_worker_status_reports_an_unreachable_broker() -> None:
    from inspector.config import Settings
    from inspector.web.routes.overview import worker_status

    status = worker_status(Settings(executor="celery", broker_url="redis://127.0.0.1:1/0"), timeout=0.5)
    assert not status.ok and "unreachable" in status.summary


def test_another_method_of_the_same_checkpoint_is_calibrated_on_its_own_scale(
    client: TestClient, seeded: Seeded
) -> None:
    """Results of v1 scored with vaegan are not those of vaegan-attn: the queue and calibration
    take the method apart, and its threshold is its own default."""
    with session_scope(seeded.settings.db_url) as session:
        session.add(Model(version="v1", method="vaegan", path="model.pt", default_threshold=0.04, config={}))
        session.flush()
        session.add(
            Result(
                frame_id=seeded.frame_ids[1],
                model_version="v1",
                method="vaegan",
                score=0.05,
                threshold=0.04,
                is_anomaly=True,
            )
        )
    assert len(queue_ids(client.get("/queue?method=vaegan").text)) == 1
    assert count_badge(client.get("/queue?method=vaegan-attn").text) == FLAGGED_UNREVIEWED
    html = client.get("/calibration?model_version=v1&method=vaegan").text
    assert 'scored with <span class="mono">vaegan</span>' in html and "0 labelled frames" in html
    assert client.get("/calibration?model_version=v1&method=vae").status_code == 404


def test_the_dashboard_never_imports_torch() -> None:
    """It draws stored maps and never runs a model: importing the app must not load torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from inspector.config import Settings\n"
        "from inspector.web import create_app\n"
        "create_app(Settings())\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'inspector.detector' not in sys.modules, 'the detector was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- who may read; the session key (issue 17, items 8 and 13) --------------------------------


def test_a_visitor_who_only_reads_gets_no_cookie(client: TestClient, seeded: Seeded) -> None:
    for page in ("/queue", "/overview", "/calibration", f"/results/{seeded.result_ids[39]}"):
        response = client.get(page)
        assert response.status_code == 200 and "set-cookie" not in response.headers, page
    assert "inspector_session" in client.get("/login").headers["set-cookie"]  # the form needs one


def test_the_session_key_is_random_per_install_and_kept_in_the_data_dir(seeded: Seeded) -> None:
    """Without server.secret the cookie must not be signed with a key derived from the token
    (sha256 of it was guessable offline at 44 000 tokens/s): a random key, made once (0600)."""
    first = TestClient(create_app(seeded.settings))
    csrf = csrf_of(first)
    first.post("/login", data={"csrf": csrf, "token": TOKEN, "name": "Ada"})
    cookie = first.cookies["inspector_session"]
    derived = hashlib.sha256(f"inspector-session:{TOKEN}".encode()).hexdigest()
    with pytest.raises(itsdangerous.BadSignature):
        itsdangerous.TimestampSigner(derived).unsign(cookie)
    key = seeded.settings.data_path / "session.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) == 64
    restarted = TestClient(create_app(seeded.settings), cookies={"inspector_session": cookie})
    assert "Ada" in restarted.get("/queue").text  # the same key after a restart
    other = dataclasses.replace(seeded.settings, data_dir=str(seeded.settings.data_path / "other"))
    assert security.session_secret(other) != security.session_secret(seeded.settings)


def test_reads_need_a_login_when_listening_beyond_loopback(seeded: Seeded) -> None:
    settings = dataclasses.replace(seeded.settings, server=ServerSettings(host="0.0.0.0", token=TOKEN))
    client = TestClient(create_app(settings))
    result_id = seeded.result_ids[39]
    for page in (
        "/queue",
        "/overview",
        "/calibration",
        f"/results/{result_id}",
        f"/maps/{result_id}/input.png",
    ):
        assert client.get(page).status_code == 401, page
    assert client.get("/healthz").status_code == 200
    csrf = csrf_of(client)  # the login form is open
    client.post("/login", data={"csrf": csrf, "token": TOKEN, "name": "Ada"})
    assert client.get("/queue").status_code == 200 and client.get(f"/results/{result_id}").status_code == 200
    no_token = dataclasses.replace(settings, server=ServerSettings(host="0.0.0.0"))
    assert TestClient(create_app(no_token)).get("/queue").status_code == 403
    loopback = dataclasses.replace(settings, server=ServerSettings(host="::1", token=TOKEN))
    assert TestClient(create_app(loopback)).get("/queue").status_code == 200


def test_a_cookie_replayed_after_logout_is_refused(seeded: Seeded) -> None:
    """Logout ends the session on the server (issue 17, item 9): the cookie, still signed and
    within its 12 hours, no longer reviews, whoever replays it; other sessions stay logged in."""
    browser, other = TestClient(create_app(seeded.settings)), TestClient(create_app(seeded.settings))
    for client, name in ((browser, "Ada"), (other, "Bob")):
        client.post("/login", data={"csrf": csrf_of(client), "token": TOKEN, "name": name})
    copied = browser.cookies["inspector_session"]
    csrf = csrf_of(browser, "/queue")
    assert browser.post("/logout", data={"csrf": csrf}).status_code == 200
    replay = TestClient(create_app(seeded.settings), cookies={"inspector_session": copied})
    assert "Ada" not in replay.get("/queue").text
    rid = seeded.result_ids[30]
    response = replay.post(f"/results/{rid}/review", data={"csrf": csrf, "label": "normal"})
    assert response.status_code == 401
    with session_scope(seeded.settings.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Review).where(Review.reviewer == "Ada")) == 0
    assert "Bob" in other.get("/queue").text  # only the session that logged out ended
    beyond = dataclasses.replace(seeded.settings, server=ServerSettings(host="0.0.0.0", token=TOKEN))
    replay_beyond = TestClient(create_app(beyond), cookies={"inspector_session": copied})
    assert replay_beyond.get("/queue").status_code == 401
