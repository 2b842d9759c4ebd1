"""Distributed mode against the machine's real PostgreSQL and Redis, with real Celery worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from inspector import health
from inspector.cli import main
from inspector.config import Settings, WatchSettings
from inspector.store import migrate
from tests.pipeline.conftest import INSPECTOR, counts, settings_env, wait_for_results, write_frames
from tests.receivers import free_port

pytestmark = pytest.mark.services


@pytest.fixture
def distributed(tmp_path: Path, tiny_checkpoint: Path, pg_url: str, redis_url: str) -> Iterator[Settings]:
    """Distributed settings on a fresh database and a queue no other test run shares."""
    import redis

    settings = Settings(
        database_url=pg_url,
        broker_url=redis_url,
        queue=f"gpu-test-{uuid.uuid4().hex[:12]}",
        executor="celery",
        data_dir=str(tmp_path / "data"),
        model_path=str(tiny_checkpoint),
        device="cpu",
        watch=WatchSettings(settle_seconds=0.05, rescan_seconds=3600, batch_size=8, stale_seconds=3),
    )
    migrate.upgrade(pg_url)
    yield settings
    queue = settings.queue
    keys = (queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    redis.Redis.from_url(redis_url).delete(*keys)


def _watch_once(settings: Settings, folder: Path) -> None:
    result = CliRunner().invoke(main, ["watch", str(folder), "--once"], env=settings_env(settings))
    assert result.exit_code == 0, result.output


def test_celery_workers_score_50_frames_exactly_once(
    tmp_path: Path, distributed: Settings, start_worker: Callable[..., subprocess.Popen]
) -> None:
    incoming = tmp_path / "incoming"
    write_frames(incoming, 50)
    port = free_port()  # the worker's own metrics: counted in its forked pool process
    start_worker(
        *INSPECTOR, "worker", "--loglevel", "INFO", "--log-format", "json", "--metrics-port", str(port)
    )
    _watch_once(distributed, incoming)  # registers, commits, sends 7 batches of ids
    wait_for_results(distributed, 50, timeout=180, tmp_path=tmp_path)
    assert counts(distributed.database_url) == (50, {"done": 50}, 1)
    assert list(incoming.iterdir()) == []
    assert len(list((distributed.data_path / "archive").rglob("*.png"))) == 50
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    scored = [
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "inspector_frames_scored_total"
    ]
    assert sum(scored) == 50
    assert [(p.kind, p.state) for p in health.summary(distributed).processes if p.kind == "worker"] == [
        ("worker", "up")
    ]
    lines = (tmp_path / "worker0.log").read_text().splitlines()
    assert any(json.loads(line)["logger"].startswith("celery") for line in lines if line.startswith("{"))


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_nothing(
    tmp_path: Path, distributed: Settings, start_worker: Callable[..., subprocess.Popen]
) -> None:
    """The pool process dies holding a claimed batch; the redelivered message resumes it."""
    distributed.watch.stale_seconds = 600  # no help from stale-claim takeover: delivery alone
    incoming = tmp_path / "incoming"
    write_frames(incoming, 24)
    celery = [sys.executable, "-m", "celery", "-A", "tests.pipeline.slow_worker", "worker"]
    parent = start_worker(*celery, "--queues", distributed.queue, "--concurrency", "1", "--loglevel", "INFO")
    _watch_once(distributed, incoming)

    deadline = time.monotonic() + 120
    while counts(distributed.database_url)[1].get("processing", 0) == 0:
        assert time.monotonic() < deadline, "the worker never claimed a batch"
        time.sleep(0.05)
    (child,) = _children(parent.pid)
    os.kill(child, signal.SIGKILL)
    results, statuses, _ = counts(distributed.database_url)
    assert results < 24 and statuses.get("processing", 0) > 0

    # Late ack + reject-on-worker-lost put the batch back on the queue; the worker forks a
    # new pool process, which takes the same message and resumes the frames it had claimed.
    wait_for_results(distributed, 24, timeout=120, tmp_path=tmp_path)
    assert counts(distributed.database_url) == (24, {"done": 24}, 1)
    assert list(incoming.iterdir()) == []
    assert "WorkerLostError" in (tmp_path / "worker0.log").read_text()


def test_a_frame_that_kills_its_worker_is_quarantined_and_its_batch_mates_scored(
    tmp_path: Path, distributed: Settings, start_worker: Callable[..., subprocess.Popen]
) -> None:
    """Each try of the poison frame kills the pool process; the message comes back each time
    (late ack, reject on worker lost) until the frame has used up its attempts."""
    distributed.watch.stale_seconds = 600  # delivery alone, no stale-claim takeover
    incoming = tmp_path / "incoming"
    write_frames(incoming, 6)
    write_frames(incoming, 1, seed=9, prefix="g-poison-")  # sorts among the others: one batch
    celery = [sys.executable, "-m", "celery", "-A", "tests.pipeline.poison_worker", "worker"]
    start_worker(*celery, "--queues", distributed.queue, "--concurrency", "1", "--loglevel", "INFO")
    _watch_once(distributed, incoming)
    deadline = time.monotonic() + 120
    while counts(distributed.database_url)[1] != {"done": 6, "quarantined": 1}:
        assert time.monotonic() < deadline, counts(distributed.database_url)
        time.sleep(0.25)
    assert counts(distributed.database_url) == (6, {"done": 6, "quarantined": 1}, 1)
    quarantined = list((distributed.data_path / "quarantine").glob("*-g-poison-*.png"))
    assert len(quarantined) == 1 and list(incoming.iterdir()) == []
    note = quarantined[0].with_name(quarantined[0].name + ".error.txt").read_text()
    assert "attempts" in note


def test_a_lost_worker_host_is_recovered_by_the_watchers_rescan(
    tmp_path: Path, distributed: Settings, start_worker: Callable[..., subprocess.Popen]
) -> None:
    """The whole worker dies (its message stays unacknowledged): stale claims are re-queued."""
    incoming = tmp_path / "incoming"
    write_frames(incoming, 16)
    celery = [sys.executable, "-m", "celery", "-A", "tests.pipeline.slow_worker", "worker"]
    doomed = start_worker(*celery, "--queues", distributed.queue, "--pool", "solo", "--loglevel", "INFO")
    _watch_once(distributed, incoming)
    deadline = time.monotonic() + 120
    while counts(distributed.database_url)[1].get("processing", 0) == 0:
        assert time.monotonic() < deadline, "the worker never claimed a batch"
        time.sleep(0.05)
    doomed.kill()
    doomed.wait()
    assert counts(distributed.database_url)[0] < 16

    start_worker(*INSPECTOR, "worker", "--loglevel", "INFO")
    deadline = time.monotonic() + 180
    while counts(distributed.database_url)[0] < 16:  # cron-style rescans re-queue stale claims
        assert time.monotonic() < deadline, counts(distributed.database_url)
        time.sleep(distributed.watch.stale_seconds)
        _watch_once(distributed, incoming)
    assert counts(distributed.database_url) == (16, {"done": 16}, 1)
    assert list(incoming.iterdir()) == []


def test_a_killed_watcher_restarts_and_its_rescans_finish_the_job(
    tmp_path: Path, distributed: Settings, start_worker: Callable[..., subprocess.Popen]
) -> None:
    incoming, staging = tmp_path / "incoming", tmp_path / "staging"
    incoming.mkdir()
    frames = write_frames(staging, 30)
    start_worker(*INSPECTOR, "worker", "--loglevel", "INFO")
    env = os.environ | settings_env(distributed) | {"INSPECTOR_WATCH__RESCAN_SECONDS": "1"}
    watcher = subprocess.Popen([*INSPECTOR, "watch", str(incoming)], env=env, stderr=subprocess.DEVNULL)
    try:
        for path in frames[:10]:
            path.rename(incoming / path.name)
        deadline = time.monotonic() + 120
        while sum(counts(distributed.database_url)[1].values()) < 10:  # registered
            assert time.monotonic() < deadline and watcher.poll() is None
            time.sleep(0.1)
        for path in frames[10:20]:
            path.rename(incoming / path.name)
    finally:
        watcher.kill()  # SIGKILL while frames land, some registered, some not
        watcher.wait(timeout=30)
    for path in frames[20:]:
        path.rename(incoming / path.name)

    restarted = subprocess.Popen([*INSPECTOR, "watch", str(incoming)], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_results(distributed, 30, timeout=180, tmp_path=tmp_path)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)
    assert restarted.returncode == 0  # SIGTERM stops the watcher cleanly
    assert counts(distributed.database_url) == (30, {"done": 30}, 1)
    assert list(incoming.iterdir()) == []
