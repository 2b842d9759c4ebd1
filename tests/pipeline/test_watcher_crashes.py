"""A watcher killed while it scores, again and again, quarantines nothing (issue 17, item 12);
a frame that kills its scorer is still quarantined after max_attempts, its batch-mates scored.

Frames a scorer died holding (the watcher itself, with one scorer) are suspects: each is scored
alone, in a process of its own, and only a death of that process, seen by the watcher, counts
an attempt against it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from inspector.config import Settings
from inspector.pipeline import executors
from inspector.pipeline.executors import InlineExecutor
from inspector.pipeline.watcher import Watcher
from inspector.store import queries
from inspector.store.db import session_scope
from inspector.store.models import Frame, utcnow
from tests.pipeline import poison_scorer
from tests.pipeline.conftest import ROOT, counts, settings_env, write_frames

SLOW_WATCHER = [
    sys.executable,
    "-c",
    "import tests.pipeline.slow_scoring; from inspector.cli import main; main()",
]


def _claimed_since(settings: Settings, moment: datetime) -> bool:
    with session_scope(settings.db_url) as session:
        claimed = select(Frame.id).where(Frame.status == "processing", Frame.updated_at > moment)
        return session.scalar(claimed.limit(1)) is not None


@pytest.mark.slow
def test_three_quick_watcher_kills_quarantine_no_frame(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    write_frames(incoming, 1)
    env = os.environ | settings_env(embedded)
    for _ in range(3):  # killed each time once it claimed the frame (or scored it)
        started = utcnow()
        watcher = subprocess.Popen(
            [*SLOW_WATCHER, "watch", str(incoming)], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while not _claimed_since(embedded, started) and counts(embedded.db_url)[0] < 1:
            assert time.monotonic() < deadline and watcher.poll() is None
            time.sleep(0.02)
        watcher.kill()
        watcher.wait()
    done = subprocess.run(
        [*SLOW_WATCHER, "watch", str(incoming), "--once"], cwd=ROOT, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert counts(embedded.db_url) == (1, {"done": 1}, 1)  # it used to be quarantined as poison
    with session_scope(embedded.db_url) as session:
        assert session.scalar(text("SELECT max(attempts) FROM frames")) <= 1  # no kill was counted


def test_a_frame_that_kills_its_scorer_is_quarantined_and_the_rest_scored(
    tmp_path: Path, embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher died once holding a batch with the poison frame (attempts 1 each, as its claim
    left them); alone in a process of its own, the poison frame kills it twice more, each death
    counted, and is quarantined; its batch-mates, suspects too, are scored."""
    incoming = tmp_path / "incoming"
    write_frames(incoming, 4)
    write_frames(incoming, 1, seed=9, prefix="g-poison-")
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    watcher.register(watcher.look(watcher.scan()) or watcher.look(watcher.scan()))
    with session_scope(embedded.db_url) as session:
        session.execute(text("UPDATE frames SET status='processing', attempts=1"))
    monkeypatch.setattr(executors, "_isolated", poison_scorer.isolated)
    watcher.run_once()
    assert counts(embedded.db_url) == (4, {"done": 4, "quarantined": 1}, 1)
    with session_scope(embedded.db_url) as session:
        (poison,) = [f for f in session.query(Frame) if "poison" in f.path]
    assert poison.attempts == embedded.watch.max_attempts
    assert poison.error == queries.gave_up_note(embedded.watch.max_attempts)
    assert list((embedded.data_path / "quarantine").glob("*-g-poison-*.png"))
