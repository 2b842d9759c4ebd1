"""The drift alarm: the KS test on censored scores and on frame levels, and the monitor end to end:
a source whose frames change is found drifting (its state, an alert through the outbox, the
metric, the status, the dashboard's banner, `inspector drift`), and is clear again once its
frames are back; a change of lighting that flat-fielding hides from the model shows in the
frames' levels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from scipy.stats import kstwobign
from sqlalchemy import select

from inspector import health, metrics
from inspector.cli import main
from inspector.config import DriftSettings, FrameSpec, Settings
from inspector.pipeline import drift
from inspector.pipeline.alerts import Dispatcher
from inspector.pipeline.process import process_frames
from inspector.pipeline.watcher import Watcher
from inspector.store.db import session_scope
from inspector.store.models import AlertOutbox, DriftEvent, Result
from inspector.training import LEVELS_KEPT, TrainOptions, level_reference, load_training_frames, train
from inspector.web import create_app
from tests.conftest import TINY_SIZE, blob_frames, tiny_config
from tests.pipeline.conftest import settings_env, write_frames


def test_ks_distance_and_p_value() -> None:
    rng = np.random.default_rng(0)
    for shift in (0.0, 0.4, 1.0):
        a, b = rng.normal(shift, 1, 60), rng.normal(0, 1, 150)
        distance, p = drift.ks_two_sample(a, b)
        everything = np.concatenate([a, b])
        gaps = [abs(np.mean(a <= x) - np.mean(b <= x)) for x in everything]
        assert distance == pytest.approx(max(gaps))
        assert p == pytest.approx(kstwobign.sf(np.sqrt(60 * 150 / 210) * distance), rel=1e-6)


def test_flagged_scores_count_as_the_threshold() -> None:
    """Real defects move the test by their share of the window at most; a drift that flags every
    frame still shows as a mass at the threshold."""
    rng = np.random.default_rng(1)
    settings = DriftSettings(window=200, min_frames=50, alpha=1e-6, min_effect=0.3)
    reference = rng.normal(0, 1, 100)
    threshold = float(np.quantile(reference, 0.99))
    normal = rng.normal(0, 1, 200)
    assert not drift.judge_scores(normal, reference, threshold, settings).drifting
    defects = normal.copy()
    defects[:20] = 50.0  # 10% of the window: real defects, far above the threshold
    assert not drift.judge_scores(defects, reference, threshold, settings).drifting
    lamp_died = rng.normal(30, 1, 200)  # every frame flagged
    verdict = drift.judge_scores(lamp_died, reference, threshold, settings)
    assert verdict.drifting and verdict.statistic > 0.9
    below = rng.normal(-1.5, 0.5, 200)  # scores fall (blur): judged normal, still a drift
    assert drift.judge_scores(below, reference, threshold, settings).drifting
    note = drift.judge_scores(normal[:10], reference, threshold, settings).note
    assert note == "10 in the window, fewer than 50"
    # Hysteresis: a drifting quantity stays so until the p-value is above clear_alpha.
    half = np.concatenate([normal[:150], lamp_died[:50]])
    assert drift.judge_scores(half, reference, threshold, settings, drifting=True).drifting
    assert not drift.judge_scores(half, reference, threshold, settings, drifting=False).drifting


def test_a_large_training_sets_levels_are_kept_as_quantiles() -> None:
    assert level_reference([0.3, 0.1, 0.2]) == [0.1, 0.2, 0.3]
    kept = level_reference(np.linspace(0, 1, 5001).tolist())
    assert len(kept) == LEVELS_KEPT and kept[0] == 0.0 and kept[-1] == 1.0 and kept == sorted(kept)


class Collecting:
    name = "webhook"

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def send(self, source: str, body: bytes) -> None:
        self.bodies.append(json.loads(body))

    def close(self) -> None:
        pass


def _stream(tmp_path: Path, settings: Settings, name: str, frames: np.ndarray) -> None:
    folder = tmp_path / name
    folder.mkdir()
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{name}{i:03d}.png"), (frame[0] * 255).astype(np.uint8))
    watcher = Watcher(folder, settings)
    watcher.look(watcher.scan())
    watcher.register(watcher.look(watcher.scan()))
    process_frames(list(range(1, 10_000)), settings)


def test_a_drifting_source_is_found_alerted_shown_and_cleared(tmp_path: Path, embedded: Settings) -> None:
    embedded.watch.source = "cam"
    embedded.alerts.webhook_url = "http://127.0.0.1:9/hook"
    embedded.alerts.cooldown_seconds = 0
    embedded.drift = DriftSettings(window=40, min_frames=30, alpha=0.01, min_effect=0.5, clear_alpha=0.05)
    _stream(tmp_path, embedded, "normal", blob_frames(40, seed=21))
    state, level = drift.check(embedded)
    assert (state.watched, level.watched) == ("score", "level")
    assert not state.drifting and state.frames == 40 and state.statistic < 0.5
    # A model trained before its checkpoints recorded frame levels: its levels are not tested.
    assert level.statistic is None and not level.drifting
    assert level.note == "its checkpoint records no frame levels (trained before inspector recorded them)"

    inverted = 1.0 - blob_frames(40, seed=22)  # the lamp and the background swapped: every frame far off
    _stream(tmp_path, embedded, "inverted", inverted)
    state, _ = drift.check(embedded)
    assert state.drifting and state.statistic >= 0.5 and state.since is not None
    state, _ = drift.check(embedded)  # still drifting: no second event
    with session_scope(embedded.db_url) as session:
        events = session.query(DriftEvent).all()
        assert len(events) == 1 and (events[0].source, events[0].watched) == ("cam", "score")
        assert session.query(AlertOutbox).filter(AlertOutbox.drift_event_id.is_not(None)).count() == 1

    # The alert, through the outbox: a drift message of its own, before any flag of the source.
    channel = Collecting()
    Dispatcher(embedded, {"webhook": channel}).dispatch_once()
    body = channel.bodies[0]
    assert body["event"] == "inspector.drift" and body["source"] == "cam"
    assert body["drifts"][0]["statistic"] == pytest.approx(state.statistic)
    assert body["drifts"][0]["watched"] == "score"
    assert body["models_url"].endswith("/models?source=cam")

    # The status, the metric, the banner, the command.
    report = health.summary(embedded)
    assert any(problem.startswith("cam drifts: its latest 40 scores") for problem in report.problems)
    scrape = metrics.exposition(metrics.registry(embedded, every_group=False, pipeline=True)).decode()
    assert 'inspector_drift{source="cam"} 1.0' in scrape and "inspector_drift_statistic{" in scrape
    page = TestClient(create_app(embedded)).get("/overview").text
    assert 'id="drift-cam-score"' in page and "Drift on cam" in page and "latest 40 scores" in page
    env = settings_env(embedded) | {
        "INSPECTOR_DRIFT__WINDOW": "40",
        "INSPECTOR_DRIFT__MIN_FRAMES": "30",
        "INSPECTOR_DRIFT__ALPHA": "0.01",
        "INSPECTOR_DRIFT__MIN_EFFECT": "0.5",
        "INSPECTOR_DRIFT__CLEAR_ALPHA": "0.05",
    }
    result = CliRunner().invoke(main, ["drift"], env=env)
    assert result.exit_code == 1 and "cam              score  DRIFTING since" in result.output
    assert "cam              level  not tested: its checkpoint records no frame levels" in result.output

    # Normal frames again: clear once the window is back to normal.
    _stream(tmp_path, embedded, "again", blob_frames(40, seed=23))
    state, _ = drift.check(embedded)
    assert not state.drifting and state.since is None
    result = CliRunner().invoke(main, ["drift", "--json"], env=env)
    assert result.exit_code == 0 and json.loads(result.output)[0]["drifting"] is False
    assert 'id="drift-cam-score"' not in TestClient(create_app(embedded)).get("/overview").text


def test_a_brighter_lamp_shows_in_the_frames_levels(tmp_path: Path, embedded: Settings) -> None:
    """+40 grey levels on a flat-fielded model: the frames' levels drift from its training frames'
    (an event of their own, whatever the scores do), and clear once the lamp is back."""
    spec = FrameSpec(image_size=TINY_SIZE, flatten=4.0)
    write_frames(tmp_path / "train", 48, seed=30, prefix="t")
    frames, records, _ = load_training_frames(str(tmp_path / "train"), spec)
    checkpoint = train(frames, tiny_config(), spec, TrainOptions(epochs=1, device="cpu"), records=records)
    checkpoint.save(tmp_path / "flat.pt")
    embedded.model_path = str(tmp_path / "flat.pt")
    embedded.watch.source = "cam"
    embedded.drift = DriftSettings(window=40, min_frames=30, alpha=0.01, min_effect=0.5, clear_alpha=0.05)

    _stream(tmp_path, embedded, "normal", blob_frames(40, seed=31))
    with session_scope(embedded.db_url) as session:
        levels = session.scalars(select(Result.level)).all()
    assert len(levels) == 40 and all(0.0 < level < 1.0 for level in levels)
    _, level = drift.check(embedded)
    assert level.watched == "level" and not level.drifting and level.statistic < 0.5

    _stream(tmp_path, embedded, "glare", np.clip(blob_frames(40, seed=32) + 40 / 255, 0, 1))
    _, level = drift.check(embedded)
    assert level.drifting and level.statistic >= 0.5 and level.frames == 40
    with session_scope(embedded.db_url) as session:
        assert "level" in [e.watched for e in session.query(DriftEvent).all()]
    report = health.summary(embedded)
    assert any(p.startswith("cam drifts: its latest 40 frame levels") for p in report.problems)
    assert "training frames" in TestClient(create_app(embedded)).get("/overview").text

    _stream(tmp_path, embedded, "back", blob_frames(40, seed=33))
    _, level = drift.check(embedded)
    assert not level.drifting and level.since is None
