"""Faults during a stream, distributed mode, against services the tests start and kill themselves
(a Redis and a PostgreSQL cluster of their own: bench/services.py), never the machine's shared
ones. Each fault costs seconds, not the ten minutes of ``stale_seconds`` (issue 17, item 6), and
no frame is lost or scored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bench.services import PostgresCluster, RedisServer
from inspector.config import Settings, WatchSettings
from inspector.pipeline.distributed import CeleryExecutor
from inspector.pipeline.watcher import Watcher
from inspector.store import migrate
from inspector.store.db import session_scope
from inspector.store.models import Frame
from tests.pipeline.conftest import INSPECTOR, counts, running, until, wait_for_results, write_frames

pytestmark = [pytest.mark.services, pytest.mark.slow]

LEASE = 4.0  # watch.claim_lease_seconds here: a lost worker's claim lapses within it
GOAL = 60.0  # seconds from the end of a fault to the last frame's result, at most (was 600)


@pytest.fixture
def distributed(
    tmp_path: Path, tiny_checkpoint: Path, private_pg_url: str, private_redis: RedisServer
) -> Settings:
    """Distributed settings on the test's own Redis and a fresh database of the private cluster;
    nothing is left to stale_seconds (ten minutes)."""
    settings = Settings(
        database_url=private_pg_url,
        broker_url=private_redis.url,
        queue=f"faults-{uuid.uuid4().hex[:8]}",
        executor="celery",
        data_dir=str(tmp_path / "data"),
        model_path=str(tiny_checkpoint),
        device="cpu",
        watch=WatchSettings(
            settle_seconds=0.05,
            rescan_seconds=3600,
            batch_size=4,
            stale_seconds=600,
            claim_lease_seconds=LEASE,
        ),
    )
    migrate.upgrade(private_pg_url)
    return settings


def _land(paths: list[Path], folder: Path) -> None:
    for path in paths:
        path.rename(folder / path.name)


def _registered(settings: Settings) -> int:
    return sum(counts(settings.database_url)[1].values())


def _stream(tmp_path: Path, n: int) -> tuple[Path, list[Path]]:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    return incoming, write_frames(tmp_path / "staging", n)


def test_a_broker_outage_delays_frames_by_seconds(
    tmp_path: Path,
    distributed: Settings,
    private_redis: RedisServer,
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    """Frames that land while Redis is down are committed, their sends fail; they go out within
    seconds of its return (they used to wait stale_seconds, queued, their messages never sent)."""
    incoming, frames = _stream(tmp_path, 12)
    start_worker(*INSPECTOR, "worker", "--loglevel", "INFO")
    with running(Watcher(incoming, distributed, CeleryExecutor(distributed))):
        _land(frames[:4], incoming)
        wait_for_results(distributed, 4, 180, tmp_path)  # the worker is up, its model loaded
        private_redis.kill()
        _land(frames[4:], incoming)
        until(lambda: _registered(distributed) == 12, 30)
        time.sleep(2)  # sends fail meanwhile
        private_redis.start()
        back = time.monotonic()
        wait_for_results(distributed, 12, GOAL, tmp_path)
    assert time.monotonic() - back < GOAL
    assert counts(distributed.database_url) == (12, {"done": 12}, 1)
    assert list(incoming.iterdir()) == []


def test_frames_whose_messages_a_restarted_broker_lost_are_sent_again(
    tmp_path: Path,
    distributed: Settings,
    private_redis: RedisServer,
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    """Sent while no worker runs, the messages sit in Redis; it restarts without them. The watcher
    sees a new Redis (its run id) and sends every queued frame again."""
    incoming, frames = _stream(tmp_path, 8)
    with running(Watcher(incoming, distributed, CeleryExecutor(distributed))):
        _land(frames, incoming)
        until(lambda: counts(distributed.database_url)[1] == {"queued": 8}, 30)
        time.sleep(0.5)  # sent
        private_redis.kill()
        private_redis.start()  # empty
        back = time.monotonic()
        start_worker(*INSPECTOR, "worker", "--loglevel", "INFO")
        wait_for_results(distributed, 8, GOAL + 60, tmp_path)  # + a worker's start
    assert time.monotonic() - back < GOAL + 60
    assert counts(distributed.database_url) == (8, {"done": 8}, 1)


def _claims(settings: Settings) -> dict[int, tuple[str | None, datetime]]:
    """The frames being scored: their claimant and when their claim was last taken or renewed."""
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Frame.id, Frame.claimed_by, Frame.updated_at).where(Frame.status == "processing")
        )
        return {row.id: (row.claimed_by, row.updated_at) for row in rows}


def _renewed(settings: Settings, claims: dict[int, tuple[str | None, datetime]]) -> bool:
    """Whether every one of these claims is still held by its claimant and was renewed since."""
    now = _claims(settings)
    return all(
        frame in now and now[frame][0] == claimant and now[frame][1] > taken
        for frame, (claimant, taken) in claims.items()
    )


def test_a_whole_worker_lost_mid_batch_is_recovered_within_its_lease(
    tmp_path: Path,
    distributed: Settings,
    start_worker: Callable[..., subprocess.Popen],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kill -9 of a worker (solo pool: the process that holds the claim) mid-batch: its claim is
    no longer renewed, lapses within claim_lease_seconds, and the watcher hands the batch out
    again (it used to wait for stale_seconds and the broker's visibility timeout). The kill waits
    for a renewal, not for a time: a batch that outlives several leases keeps its claim."""
    monkeypatch.setenv("SLOW_SCORING_SECONDS", str(10 * LEASE))  # the doomed batch never ends
    incoming, frames = _stream(tmp_path, 8)
    celery = [sys.executable, "-m", "celery", "-A", "tests.pipeline.slow_worker", "worker"]
    doomed = start_worker(*celery, "--queues", distributed.queue, "--pool", "solo", "--loglevel", "INFO")
    with running(Watcher(incoming, distributed, CeleryExecutor(distributed))):
        _land(frames, incoming)
        until(lambda: bool(_claims(distributed)), 120)
        claims = _claims(distributed)
        assert claims
        until(lambda: _renewed(distributed, claims), 60)
        assert _renewed(distributed, claims)  # a slow batch is not a dead worker
        doomed.kill()
        doomed.wait()
        lost = time.monotonic()
        start_worker(*INSPECTOR, "worker", "--loglevel", "INFO")
        wait_for_results(distributed, 8, GOAL + 60, tmp_path)
    assert time.monotonic() - lost < GOAL + 60
    assert counts(distributed.database_url) == (8, {"done": 8}, 1)


def test_a_database_restart_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path,
    distributed: Settings,
    private_postgres: PostgresCluster,
    start_worker: Callable[..., subprocess.Popen],
) -> None:
    """PostgreSQL stops for 3 s while frames land and a worker scores: registrations, claims,
    renewals and commits that failed are tried again; every frame ends scored, once."""
    incoming, frames = _stream(tmp_path, 16)
    start_worker(*INSPECTOR, "worker", "--loglevel", "INFO")
    with running(Watcher(incoming, distributed, CeleryExecutor(distributed))):
        _land(frames[:4], incoming)
        wait_for_results(distributed, 4, 180, tmp_path)
        _land(frames[4:10], incoming)
        private_postgres.stop()
        _land(frames[10:], incoming)
        time.sleep(3)
        private_postgres.start()
        back = time.monotonic()
        wait_for_results(distributed, 16, GOAL, tmp_path)
    assert time.monotonic() - back < GOAL
    assert counts(distributed.database_url) == (16, {"done": 16}, 1)
    assert list(incoming.iterdir()) == []


def test_a_killed_pool_process_is_resumed_at_once(
    tmp_path: Path, distributed: Settings, start_worker: Callable[..., subprocess.Popen]
) -> None:
    """kill -9 of the pool process (its parent lives): the message comes back at once (late ack,
    reject on worker lost) and resumes its own claim, without waiting for the lease."""
    incoming, frames = _stream(tmp_path, 8)
    celery = [sys.executable, "-m", "celery", "-A", "tests.pipeline.slow_worker", "worker"]
    parent = start_worker(*celery, "--queues", distributed.queue, "--concurrency", "1", "--loglevel", "INFO")
    with running(Watcher(incoming, distributed, CeleryExecutor(distributed))):
        _land(frames, incoming)
        until(lambda: counts(distributed.database_url)[1].get("processing", 0) > 0, 120)
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGKILL)
        wait_for_results(distributed, 8, GOAL, tmp_path)
    assert counts(distributed.database_url) == (8, {"done": 8}, 1)
