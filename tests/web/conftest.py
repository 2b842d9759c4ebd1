"""A seeded dashboard database: rows made directly, small stored map planes, no model or pipeline needed.

40 frames with scores 0.05 … 0.9275 (model v1, method vaegan-attn, default threshold 0.5), even
ids from cam-a, odd from cam-b. Ten cam-a frames are labelled so that recall ≥ 99% calls for a threshold
of 0.2975 on cam-a, which flags four more unreviewed cam-a frames.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from inspector.config import ServerSettings, Settings
from inspector.maps import HEAT_KINDS, MAP_KINDS, encode_png
from inspector.store.db import get_engine, session_scope
from inspector.store.models import Base, Frame, Model, Result, ResultMap, Review, utcnow
from inspector.web import create_app

TOKEN = "letmein"
METHOD = "vaegan-attn"
N_FRAMES = 40
DEFAULT_THRESHOLD = 0.5
ANOMALY_LABELS = (14, 30, 34, 38)  # frame indexes labelled anomaly (all cam-a)
NORMAL_LABELS = (0, 2, 4, 6, 8, 32)  # labelled normal; 32 is a false alarm above the threshold
SUGGESTED = (0.05 + 8 * 0.0225 + 0.05 + 14 * 0.0225) / 2  # between normal 8 and anomaly 14


def score_of(i: int) -> float:
    return 0.05 + i * 0.0225


def png(seed: int, heat: bool = False) -> bytes:
    """A stored 32×32 plane: a disc on a gradient (an image), or a blob scaled to peak 255 (heat)."""
    yy, xx = np.mgrid[:32, :32]
    image = (xx * 4 + seed * 3) % 256
    disc = (yy - 16 - seed % 5) ** 2 + (xx - 16) ** 2 < 60
    image = np.where(disc, 230, image)
    if heat:
        image = 255 * np.exp(-((yy - 10 - seed % 8) ** 2 + (xx - 20) ** 2) / 30)
    return encode_png(image.astype(np.uint8), fast=True)


@dataclass
class Seeded:
    settings: Settings
    result_ids: list[int]  # by frame index
    frame_ids: list[int]


def seed(data_dir: Path, token: str = TOKEN, database_url: str = "") -> Seeded:
    """The seeded rows in data_dir's SQLite database, or in ``database_url``'s (empty) database."""
    settings = Settings(database_url=database_url, data_dir=str(data_dir), server=ServerSettings(token=token))
    Base.metadata.create_all(get_engine(settings.db_url))
    now = utcnow()
    result_ids, frame_ids = [], []
    with session_scope(settings.db_url) as session:
        session.add(
            Model(
                version="v1",
                path="model.pt",
                method=METHOD,
                default_threshold=DEFAULT_THRESHOLD,
                config={},
                created_at=now - timedelta(days=1),
            )
        )
        for i in range(N_FRAMES):
            when = now - timedelta(minutes=3 * i)
            frame = Frame(
                content_hash=f"{i:064x}",
                path=f"/incoming/f{i}.png",
                source="cam-a" if i % 2 == 0 else "cam-b",
                size_bytes=1000,
                status="done",
                landed_at=when,
                registered_at=when,
                updated_at=when,
            )
            session.add(frame)
            session.flush()
            score = score_of(i)
            result = Result(
                frame_id=frame.id,
                model_version="v1",
                method=METHOD,
                score=score,
                threshold=DEFAULT_THRESHOLD,
                is_anomaly=score > DEFAULT_THRESHOLD,
                created_at=when,
            )
            session.add(result)
            session.flush()
            for kind in MAP_KINDS:
                session.add(ResultMap(result_id=result.id, kind=kind, png=png(i, heat=kind in HEAT_KINDS)))
            result_ids.append(result.id)
            frame_ids.append(frame.id)
        for indexes, label in ((ANOMALY_LABELS, "anomaly"), (NORMAL_LABELS, "normal")):
            for i in indexes:
                session.add(Review(frame_id=frame_ids[i], label=label, reviewer="seed", created_at=now))
    return Seeded(settings, result_ids, frame_ids)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("seed") / "data")


@pytest.fixture
def seeded(seeded_template: Seeded, tmp_path: Path) -> Seeded:
    """A private copy of the seeded data folder (database and maps): copying beats re-seeding."""
    data_dir = tmp_path / "data"
    shutil.copytree(seeded_template.settings.data_path, data_dir)
    settings = dataclasses.replace(seeded_template.settings, data_dir=str(data_dir))
    return Seeded(settings, seeded_template.result_ids, seeded_template.frame_ids)


@pytest.fixture
def client(seeded: Seeded) -> TestClient:
    return TestClient(create_app(seeded.settings))


def csrf_of(client: TestClient, path: str = "/login") -> str:
    """The session's CSRF token, as a page hands it to its forms (a session starts at the login
    form; a visitor who only reads has none)."""
    page = client.get(path).text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


@pytest.fixture
def logged_in(client: TestClient) -> TestClient:
    token = csrf_of(client, "/login")
    response = client.post("/login", data={"csrf": token, "token": TOKEN, "name": "Ada", "next": "/queue"})
    assert response.status_code == 200 and "Ada" in response.text
    return client


CANDIDATE = "v2"
CANDIDATE_SCORES = {32: 0.1, 14: 0.6}  # where the candidate differs from v1: its false alarm and its miss


def add_candidate(seeded: Seeded) -> dict[int, int]:
    """A candidate v2 for cam-a with shadow results on every frame: v1's scores except frame 32
    (v1's false alarm, low for v2) and frame 14 (v1's miss, flagged by v2). Its result ids by index."""
    from inspector.pipeline import registry

    ids = {}
    with session_scope(seeded.settings.db_url) as session:
        session.add(Model(version=CANDIDATE, path="cand.pt", method=METHOD, default_threshold=0.5, config={}))
        session.flush()
        for i, frame_id in enumerate(seeded.frame_ids):
            score = CANDIDATE_SCORES.get(i, score_of(i))
            result = Result(
                frame_id=frame_id,
                model_version=CANDIDATE,
                method=METHOD,
                score=score,
                threshold=0.5,
                is_anomaly=score > 0.5,
                shadow=True,
            )
            session.add(result)
            session.flush()
            session.add(ResultMap(result_id=result.id, kind="input", png=png(i)))
            ids[i] = result.id
        registry.register(session, "cam-a", CANDIDATE, METHOD, "seed", "retrained on cam-a's reviews")
    return ids
