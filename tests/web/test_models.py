"""The Models page: roles, live against candidate at matched recall, disagreements with links,
promote and roll back with CSRF and an audit row; and `inspector model compare` on the same data."""

from __future__ import annotations

import re

from alembic import command
from click.testing import CliRunner
from fastapi.testclient import TestClient

from inspector.cli import main
from inspector.store import migrate, review
from inspector.store.db import session_scope
from inspector.store.models import ThresholdChange
from tests.web.conftest import CANDIDATE, Seeded, add_candidate, csrf_of


def _cells(html: str, row_id: str) -> list[str]:
    row = re.search(rf'<tr[^>]*id="{row_id}"[^>]*>(.*?)</tr>', html, re.S)
    assert row, row_id
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row[1], re.S)
    ]


def test_the_page_compares_at_matched_recall_and_lists_disagreements(
    logged_in: TestClient, seeded: Seeded
) -> None:
    shadow = add_candidate(seeded)
    page = logged_in.get("/models?source=cam-a").text
    assert "10 reviewed frames scored by both (4 anomalies)" in page
    assert '<strong id="matched-recall">75.0%</strong>' in page
    live, candidate = _cells(page, "compare-live"), _cells(page, "compare-candidate")
    # model, ROC-AUC, threshold, false alarms, misses, flagged recently
    assert live[2:6] == ["0.9167", "0.5", "1", "1"]
    assert candidate[2:6] == ["1", "0.6625", "0", "1"]
    links = re.findall(r'class="candidate-link" href="/results/(\d+)"', page)
    assert sorted(int(i) for i in links) == sorted([shadow[14], shadow[32]])
    assert logged_in.get(f"/results/{shadow[32]}").status_code == 200
    with session_scope(seeded.settings.db_url) as session:  # the candidate's flags stay out of the queue
        assert review.queue_count(session, review.QueueFilter(model_version=CANDIDATE)) == 0


def test_promote_and_rollback_need_a_login_and_csrf_and_are_audited(
    client: TestClient, logged_in: TestClient, seeded: Seeded
) -> None:
    add_candidate(seeded)
    anonymous = TestClient(client.app)
    assert anonymous.post("/models/promote", data={"source": "cam-a"}).status_code == 401
    assert logged_in.post("/models/promote", data={"source": "cam-a", "csrf": "forged"}).status_code == 403
    csrf = csrf_of(logged_in, "/models?source=cam-a")
    done = logged_in.post(
        "/models/promote", data={"source": "cam-a", "csrf": csrf, "reason": "0 false alarms"}
    )
    assert (
        done.status_code == 200 and f"{CANDIDATE} (vaegan-attn) is the live model of cam-a now" in done.text
    )
    assert "Roll back v2" in done.text
    # Too few frames both scored to carry the live model's operating point over: it says so.
    assert (
        "cam-a: v2 (vaegan-attn) judged at threshold 0.5, its own kept: 4 reviewed anomalies and 20 "
        "recent frames (9 flagged by the live model) both scored; carrying over needs 20 anomalies, "
        "or 200 frames with 10 flagged." in done.text
    )
    assert re.search(
        r"promote → live</td>\s*<td class=\"mono\">v2</td>\s*<td class=\"mono\">configured model", done.text
    )
    again = logged_in.post("/models/promote", data={"source": "cam-a", "csrf": csrf})
    assert again.status_code == 400  # no candidate left
    back = logged_in.post("/models/rollback", data={"source": "cam-a", "csrf": csrf, "reason": "misses"})
    assert "Rolled back cam-a: v2 retired, the configured model live again." in back.text
    assert "Ada" in back.text and "misses" in back.text


def test_promote_can_keep_the_candidates_own_threshold(logged_in: TestClient, seeded: Seeded) -> None:
    add_candidate(seeded)
    page = logged_in.get("/models?source=cam-a").text
    assert '<option value="carry-over" selected>' in page and '<option value="keep">' in page
    csrf = csrf_of(logged_in, "/models?source=cam-a")
    bad = logged_in.post("/models/promote", data={"source": "cam-a", "csrf": csrf, "threshold": "guess"})
    assert bad.status_code == 400
    done = logged_in.post("/models/promote", data={"source": "cam-a", "csrf": csrf, "threshold": "keep"})
    assert "cam-a: v2 (vaegan-attn) judged at threshold 0.5, its own kept: as asked." in done.text
    with session_scope(seeded.settings.db_url) as session:
        assert session.query(ThresholdChange).count() == 0


def test_model_compare_command(seeded: Seeded) -> None:
    add_candidate(seeded)
    command.stamp(migrate.alembic_config(seeded.settings.db_url), "head")  # seeded from the models
    env = {
        "INSPECTOR_DATA_DIR": seeded.settings.data_dir,
        "INSPECTOR_ALERTS__PUBLIC_URL": "https://inspect.example",
    }
    result = CliRunner().invoke(main, ["model", "compare", "--source", "cam-a", "--last", "40"], env=env)
    assert result.exit_code == 0, result.output
    assert "at matched recall 75.0%" in result.output
    assert "live      ROC-AUC 0.917  threshold 0.5: 1 false alarms, 1 misses" in result.output
    assert "candidate ROC-AUC 1.000  threshold 0.6625: 0 false alarms, 1 misses" in result.output
    assert "they disagree on 2" in result.output and "https://inspect.example/results/" in result.output
    none = CliRunner().invoke(main, ["model", "compare", "--source", "cam-b"], env=env)
    assert none.exit_code == 1 and "no candidate to compare" in none.output
