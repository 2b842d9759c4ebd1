"""Shared fixtures: tiny models and frames, so tests run in seconds on a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.config import FrameSpec
from inspector.detector import Checkpoint
from inspector.models import ModelConfig
from inspector.training import TrainOptions, train

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"

TINY_SIZE = 32


def tiny_config(family: str = "vaegan", **overrides) -> ModelConfig:
    values = dict(image_size=TINY_SIZE, width=8, latent_dim=8, batch_size=16, anogan_steps=5, vae_samples=3)
    values.update(overrides)
    return ModelConfig(family=family, **values)


def blob_frames(n: int, size: int = TINY_SIZE, seed: int = 0) -> np.ndarray:
    """Normal frames: a bright disc at a jittered place on a dark, slightly noisy field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-2, 2, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (size / 5) ** 2).astype(np.float32)
        frames[i, 0] = np.clip(0.8 * disc + rng.normal(0, 0.03, (size, size)), 0, 1)
    return frames


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
