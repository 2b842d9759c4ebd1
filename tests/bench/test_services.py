"""The private servers of the fault tests and bench.faults never outlive their owner: killed with
SIGKILL (no atexit), its Redis and PostgreSQL go with it, and the next cluster made removes the
folder it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.provenance import ROOT
from bench.services import PG_BIN, REDIS_SERVER, PostgresCluster, _listening

OWNER = """
import os, signal, sys, tempfile
from pathlib import Path
from bench.services import PostgresCluster, RedisServer
cluster = PostgresCluster()
cluster.start()
redis = RedisServer(Path(tempfile.mkdtemp()))
redis.start()
print(cluster.port, redis.port, cluster.folder, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.services
@pytest.mark.skipif(
    not (PG_BIN / "initdb").exists() or not Path(REDIS_SERVER).exists(), reason="needs PostgreSQL and Redis"
)
def test_servers_die_with_an_owner_killed_by_sigkill() -> None:
    owner = subprocess.run(
        [sys.executable, "-c", OWNER], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert owner.returncode == -signal.SIGKILL, owner.stderr
    pg_port, redis_port, folder = owner.stdout.split()
    deadline = time.monotonic() + 10
    while (_listening(int(pg_port)) or _listening(int(redis_port))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listening(int(pg_port)) and not _listening(int(redis_port))
    assert Path(folder).exists()  # no atexit ran
    cluster = PostgresCluster()  # the next one made cleans up after the dead owner
    try:
        assert not Path(folder).exists()
    finally:
        cluster.remove()
    assert not cluster.folder.exists() and os.path.isdir(cluster.folder.parent)
