"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

Login, open the top frame, label it with the keyboard, watch the queue shrink and a new
frame arrive without reloading, then apply a calibrated threshold and watch verdicts flip.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
import uvicorn

from inspector.store.db import session_scope
from inspector.store.models import Frame, Result, Review, ThresholdChange, utcnow
from inspector.web import create_app
from tests.web.conftest import CANDIDATE, METHOD, SUGGESTED, TOKEN, Seeded, add_candidate

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
    ),
]
playwright = pytest.importorskip("playwright.sync_api")
if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def server(seeded: Seeded) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread, over the seeded database."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(seeded.settings), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server: str) -> Iterator[Page]:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=server)
        page.set_default_timeout(10_000)
        yield page
        browser.close()


def screenshot(page: Page, path: Path) -> np.ndarray:
    """Save a screenshot (also to $INSPECTOR_SCREENSHOTS, to look at) and return its pixels."""
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("INSPECTOR_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["INSPECTOR_SCREENSHOTS"]) / path.name)
    return cv2.imread(str(path))


def assert_not_blank(pixels: np.ndarray) -> None:
    assert pixels is not None and pixels.shape[0] > 500
    assert pixels.std() > 20, "screenshot is (nearly) one colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "screenshot has too few colours"


def add_flagged_frame(seeded: Seeded, score: float) -> int:
    with session_scope(seeded.settings.db_url) as session:
        frame = Frame(
            content_hash="f" * 64,
            path="/incoming/new.png",
            source="cam-b",
            size_bytes=1,
            status="done",
            landed_at=utcnow() - timedelta(seconds=1),
        )
        session.add(frame)
        session.flush()
        result = Result(
            frame_id=frame.id, model_version="v1", method=METHOD, score=score, threshold=0.5, is_anomaly=True
        )
        session.add(result)
        session.flush()
        return result.id


def test_review_and_calibrate_in_a_browser(page: Page, seeded: Seeded, tmp_path: Path) -> None:
    ids = seeded.result_ids
    page.goto("/login?next=/queue")
    page.fill("input[name=name]", "Ada")
    page.fill("input[name=token]", TOKEN)
    page.click("form.stack-form button")
    page.wait_for_url("**/queue")
    assert page.inner_text("#user") == "Ada"
    assert page.inner_text("#queue-count") == "15"

    # Open the top frame: all five maps load, the overlay follows the slider.
    page.click("#queue-rows tr[data-id] >> nth=0")
    page.wait_for_url(f"**/results/{ids[39]}")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    # input, reconstruction, error, input under attention, anomaly map
    assert page.locator(".maps img").count() == 6
    page.fill("#opacity", "20")
    assert page.eval_on_selector("#attention-layer", "e => getComputedStyle(e).opacity") == "0.2"
    assert_not_blank(screenshot(page, tmp_path / "frame.png"))

    # Label it with the keyboard: the page moves on to the next frame (38 is already labelled).
    page.keyboard.press("a")
    page.wait_for_url(f"**/results/{ids[37]}")
    assert "labelled anomaly" in page.inner_text(".flash")
    page.keyboard.press("j")
    page.wait_for_url(f"**/results/{ids[36]}")
    page.keyboard.press("k")
    page.wait_for_url(f"**/results/{ids[37]}")

    # The queue shrank, and opens from the keyboard too; a new flagged frame appears without reloading.
    page.goto("/queue")
    assert page.inner_text("#queue-count") == "14"
    assert page.get_attribute("#queue-rows tr[data-id] >> nth=0", "data-id") == str(ids[37])
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/results/{ids[37]}")
    page.go_back()
    new_id = add_flagged_frame(seeded, score=0.99)
    page.wait_for_selector(f'#queue-rows tr[data-id="{new_id}"]', timeout=15_000)
    assert page.inner_text("#queue-count") == "15"
    assert page.get_attribute("#queue-rows tr[data-id] >> nth=0", "data-id") == str(new_id)
    assert_not_blank(screenshot(page, tmp_path / "queue.png"))

    # Calibrate cam-a for recall ≥ 99% and apply: four unreviewed cam-a frames get flagged.
    page.goto(f"/results/{ids[16]}")
    assert page.inner_text("#verdict") == "below threshold"
    page.goto("/calibration?source=cam-a&target=0.99")
    assert page.inner_text("#suggested-threshold") == f"{SUGGESTED:.4g}"
    page.click("#apply")
    page.wait_for_selector(".flash")
    assert "0.5 → 0.2975; 5 verdicts changed" in page.inner_text(".flash")
    assert "Ada" in page.inner_text("#changes")
    assert_not_blank(screenshot(page, tmp_path / "calibration.png"))
    page.goto(f"/results/{ids[16]}")
    assert page.inner_text("#verdict") == "flagged"
    page.goto("/queue?source=cam-a")
    assert page.inner_text("#queue-count") == "9"


def test_what_a_new_operator_sees(page: Page, seeded: Seeded, tmp_path: Path) -> None:
    """Issue 20's dashboard details: names of ids, the heat maps' scale, the favicon, a threshold
    shown to 4 digits but applied exactly, the labels' own source, a calm empty queue, /docs."""
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    ids, frames = seeded.result_ids, seeded.frame_ids
    page.goto("/login?next=/queue")
    page.fill("input[name=name]", "Ada")
    page.fill("input[name=token]", TOKEN)
    page.click("form.stack-form button")
    page.wait_for_url("**/queue")
    assert page.evaluate("fetch('/favicon.ico').then(r => r.ok)")
    assert page.get_attribute("link[rel=icon]", "href") == "/static/favicon.svg"

    page.goto(f"/results/{ids[30]}")
    assert page.inner_text("#heading") == f"Frame {frames[30]} result {ids[30]}"
    legends = page.locator(".legend-scale")
    assert legends.count() == 3 and "255 · this frame's largest error" in legends.first.inner_text()
    stops = page.eval_on_selector(".legend-scale .jet", "e => getComputedStyle(e).backgroundImage")
    assert stops.startswith("linear-gradient") and "rgb(0, 0, 127)" in stops and "rgb(127, 0, 0)" in stops
    assert_not_blank(screenshot(page, tmp_path / "legend.png"))

    # All labels are cam-a's: the apply form offers cam-a although the page shows every source.
    page.goto("/calibration")
    assert page.eval_on_selector("select[name=source] >> nth=1", "s => s.value") == "cam-a"
    shown = page.input_value("#apply-value")
    exact = float(page.get_attribute("input[name=exact]", "value"))
    assert shown == f"{exact:.4g}" and len(shown) <= 6
    page.click("#apply")
    page.wait_for_selector(".flash")
    with session_scope(seeded.settings.db_url) as session:
        assert session.query(ThresholdChange).one().new_value == exact  # not the rounded 4 digits

    # Label the whole queue away: the 0 badge is grey, not the alarm red.
    with session_scope(seeded.settings.db_url) as session:
        for result in session.query(Result).filter(Result.is_anomaly.is_(True)):
            session.add(Review(frame_id=result.frame_id, label="normal", reviewer="Ada"))
    page.goto("/queue")
    badge = page.locator("#queue-count")
    assert badge.inner_text() == "0" and "empty" in badge.get_attribute("class")
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") != "rgb(214, 69, 61)"

    # The API's documentation renders offline under the dashboard's CSP.
    page.goto("/docs")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/results" in [p.replace("\u200b", "") for p in paths]
    assert not missing, missing


def test_compare_and_promote_in_a_browser(page: Page, seeded: Seeded, tmp_path: Path) -> None:
    """Issue 21: the Models page compares live and candidate, links their disagreements, and
    promotes (saying the threshold it is judged at) and rolls back, each change in the audit trail."""
    shadow = add_candidate(seeded)
    page.goto("/login?next=/models")
    page.fill("input[name=name]", "Ada")
    page.fill("input[name=token]", TOKEN)
    page.click("form.stack-form button")
    page.wait_for_url("**/models")
    assert page.eval_on_selector("select[name=source]", "s => s.value") == "cam-a"  # the source on trial
    assert page.inner_text("#matched-recall") == "75.0%"
    assert page.inner_text("#compare-live .false-alarms") == "1"
    assert page.inner_text("#compare-candidate .false-alarms") == "0"
    assert_not_blank(screenshot(page, tmp_path / "models.png"))

    # A disagreement opens the candidate's own result: its maps, marked as a shadow verdict.
    page.click(f'#disagreements a[href="/results/{shadow[32]}"]')
    page.wait_for_url(f"**/results/{shadow[32]}")
    assert "in shadow" in page.inner_text("#shadow")
    page.go_back()

    page.fill("#promote-form input[name=reason]", "no false alarm at the same recall")
    assert page.eval_on_selector("#promote-threshold", "s => s.value") == "carry-over"  # the default
    page.click("#promote")
    page.wait_for_selector(".flash")
    flash = page.inner_text(".flash")
    assert f"{CANDIDATE} (vaegan-attn) is the live model of cam-a now" in flash
    # Too few frames both scored to carry the live operating point over: it keeps its own, and says so.
    assert f"cam-a: {CANDIDATE} (vaegan-attn) judged at threshold 0.5, its own kept:" in flash
    assert CANDIDATE in page.inner_text("#roles tr.live-row")
    assert "no false alarm at the same recall" in page.inner_text("#model-changes")
    page.click("#rollback")
    page.wait_for_selector(".flash")
    assert "the configured model live again" in page.inner_text(".flash")
    assert "configured model" in page.inner_text("#roles tr.live-row")
    assert "rollback → live" in page.inner_text("#model-changes") and "Ada" in page.inner_text(
        "#model-changes"
    )
