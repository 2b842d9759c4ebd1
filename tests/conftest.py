"""Shared fixtures: tiny models and frames, so tests run in seconds on a 2-core CPU."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bench.services import PG_BIN, REDIS_SERVER, PostgresCluster, RedisServer
from inspector.config import FrameSpec
from inspector.detector import Checkpoint
from inspector.models import AnomalyModel, ModelConfig, family_of_config, make_config
from inspector.training import TrainOptions, train
from tests.receivers import MOSQUITTO, Broker, free_port

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"

TINY_SIZE = 32
TINY = {"image_size": TINY_SIZE, "width": 8, "latent_dim": 8, "batch_size": 16}
TINY_OF_FAMILY = {"vae": {"samples": 3}, "anogan": {"search_steps": 5}}


def tiny_config(family: str = "vaegan", **overrides) -> ModelConfig:
    return make_config(family, {**TINY, **TINY_OF_FAMILY.get(family, {}), **overrides})


def build_model(config: ModelConfig) -> AnomalyModel:
    """An untrained model of the config's family."""
    return family_of_config(config).model(config)


def blob_frames(n: int, size: int = TINY_SIZE, seed: int = 0, jitter: float = 2) -> np.ndarray:
    """Normal frames: a bright disc at a place jittered by up to ``jitter`` px on a dark, slightly
    noisy field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-jitter, jitter, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (size / 5) ** 2).astype(np.float32)
        frames[i, 0] = np.clip(0.8 * disc + rng.normal(0, 0.03, (size, size)), 0, 1)
    return frames


def encoded(image: np.ndarray, suffix: str = ".png") -> bytes:
    """An image file's bytes, as OpenCV writes them for this suffix."""
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def png_header(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    """A PNG signature and an IHDR of this size, bit depth and colour type; nothing behind it."""
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAEGAN trained for two epochs on 64 blob frames, saved to disk (about a second)."""
    frames = blob_frames(64)
    checkpoint: Checkpoint = train(
        frames, tiny_config(), FrameSpec(image_size=TINY_SIZE), TrainOptions(epochs=2, device="cpu")
    )
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    checkpoint.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tiny VAEGAN (another seed, more frames): a candidate to try beside tiny_checkpoint."""
    checkpoint = train(
        blob_frames(96, seed=7),
        tiny_config(),
        FrameSpec(image_size=TINY_SIZE),
        TrainOptions(epochs=2, seed=1, device="cpu"),
    )
    path = tmp_path_factory.mktemp("candidate") / "candidate.pt"
    checkpoint.save(path)
    return path


PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_TEST_URL = "redis://127.0.0.1:6379/9"  # a database number of the tests' own


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database on the machine's server, dropped afterwards."""
    import uuid

    import psycopg

    from inspector.store.db import dispose_engines

    name = f"inspector_test_{uuid.uuid4().hex[:12]}"
    admin = PG_SERVER.replace("+psycopg", "") + "/postgres"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield f"{PG_SERVER}/{name}"
    dispose_engines()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    """The tests' Redis database. Test runs may overlap, so each uses queues of its own
    names there and never empties the database."""
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3).ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis not reachable: {exc}")
    return REDIS_TEST_URL


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own on a free port (no persistence), to kill and restart at will."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("needs redis-server")
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the session's own (initdb, a free port), to restart at will."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"needs PostgreSQL's server programs in {PG_BIN}")
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture
def private_pg_url(private_postgres: PostgresCluster) -> Iterator[str]:
    """A fresh database on the private cluster (started again if a test left it stopped)."""
    import uuid

    import psycopg

    from inspector.store.db import dispose_engines

    if private_postgres.process is None:
        private_postgres.start()
    name = f"inspector_test_{uuid.uuid4().hex[:12]}"
    admin = private_postgres.url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield private_postgres.url.rsplit("/", 1)[0] + f"/{name}"
    dispose_engines()
    if private_postgres.process is None:
        private_postgres.start()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto on a free loopback port (never the machine's shared one), stopped after."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("needs Debian's mosquitto (apt-get install mosquitto)")
    instance = Broker(free_port(), tmp_path)
    instance.start()
    yield instance
    instance.stop()
