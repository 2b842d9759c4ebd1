"""Pipeline fixtures: PNG frames on disk and embedded settings around the session's tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from bench.services import terminate
from inspector.config import Settings, WatchSettings
from inspector.pipeline.watcher import Watcher
from inspector.store import migrate
from inspector.store.db import session_scope
from inspector.store.models import Frame, Result
from tests.conftest import blob_frames

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = [sys.executable, "-c", "from inspector.cli import main; main()"]


def write_frames(folder: Path, n: int, seed: int = 1, prefix: str = "f") -> list[Path]:
    """n distinct 32x32 grey PNGs of the normal kind (noise makes every file's content unique)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(blob_frames(n, seed=seed)):
        path = folder / f"{prefix}{i:03d}.png"
        assert cv2.imwrite(str(path), (frame[0] * 255).astype(np.uint8))
        paths.append(path)
    return paths


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings as INSPECTOR_* variables, for the CLI and subprocesses."""
    return {
        "INSPECTOR_DATABASE_URL": settings.database_url,
        "INSPECTOR_DATA_DIR": settings.data_dir,
        "INSPECTOR_MODEL_PATH": settings.model_path,
        "INSPECTOR_METHOD": settings.method,
        "INSPECTOR_DEVICE": settings.device,
        "INSPECTOR_EXECUTOR": settings.executor,
        "INSPECTOR_BROKER_URL": settings.broker_url,
        "INSPECTOR_QUEUE": settings.queue,
        "INSPECTOR_WATCH__SETTLE_SECONDS": str(settings.watch.settle_seconds),
        "INSPECTOR_WATCH__RESCAN_SECONDS": str(settings.watch.rescan_seconds),
        "INSPECTOR_WATCH__BATCH_SIZE": str(settings.watch.batch_size),
        "INSPECTOR_WATCH__STALE_SECONDS": str(settings.watch.stale_seconds),
        "INSPECTOR_WATCH__CLAIM_LEASE_SECONDS": str(settings.watch.claim_lease_seconds),
        "INSPECTOR_WATCH__QUIET_SECONDS": str(settings.watch.quiet_seconds),
        "OMP_NUM_THREADS": "1",
    }


def counts(url: str) -> tuple[int, dict[str, int], int]:
    """(results, frames by status, the most results any one frame has)."""
    with session_scope(url) as session:
        results = session.scalar(select(func.count()).select_from(Result))
        statuses = dict(session.execute(select(Frame.status, func.count()).group_by(Frame.status)).all())
        per_frame = select(func.count().label("n")).select_from(Result).group_by(Result.frame_id).subquery()
        most = session.scalar(select(func.max(per_frame.c.n))) or 0
    return results, statuses, most


def until(condition: Callable[[], bool], seconds: float) -> None:
    """Wait until condition() holds, at most this long (the assertion after says what failed)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


@contextmanager
def running(watcher: Watcher) -> Iterator[None]:
    """The watcher's service loop in a thread for the block; stopped and joined after it."""
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)


def wait_for_results(settings: Settings, results: int, timeout: float, tmp_path: Path) -> None:
    """Wait until the database holds this many results; else fail, with the workers' logs."""
    deadline = time.monotonic() + timeout
    while counts(settings.database_url)[0] < results:
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("worker*.log"))
            pytest.fail(f"only {counts(settings.database_url)} after {timeout} s; worker logs:\n{logs}")
        time.sleep(0.25)


@pytest.fixture
def start_worker(tmp_path: Path, distributed: Settings) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start Celery worker processes of the module's ``distributed`` settings (stopped at the end);
    their logs go to tmp_path."""
    started: list[subprocess.Popen] = []

    def start(*command: str) -> subprocess.Popen:
        log = (tmp_path / f"worker{len(started)}.log").open("wb")
        env = os.environ | settings_env(distributed)
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    terminate(started)


@pytest.fixture
def embedded(tmp_path: Path, tiny_checkpoint: Path) -> Settings:
    """Embedded settings (SQLite in data_dir, inline executor), schema migrated. A file that
    cannot be read is quarantined at once (quiet_seconds 0): the tests' files are complete."""
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        model_path=str(tiny_checkpoint),
        device="cpu",
        watch=WatchSettings(settle_seconds=0.05, rescan_seconds=3600, batch_size=16, quiet_seconds=0),
    )
    settings.database_url = settings.db_url
    migrate.upgrade(settings.db_url)
    return settings
