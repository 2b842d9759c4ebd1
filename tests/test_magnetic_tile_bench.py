"""The magnetic-tile benchmark's split and metrics (the full run is minutes; see bench/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import SHARED_DATA

TILES = SHARED_DATA / "magnetic-tile"
SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "magnetic_tile.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench.magnetic_tile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not TILES.is_dir(), reason="needs ../shared/data/magnetic-tile")
def test_protocol_split_and_masks(bench) -> None:
    split = bench.protocol_split(TILES)
    assert len(split.train) == 634 and len(split.test) == 710
    classes = np.array(split.classes)
    assert (classes == "Free").sum() == 318 and (classes != "Free").sum() == 392
    free = sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))
    assert split.test[0] == free[0] and split.test[1] == free[3] and free[1] in split.train
    assert not set(split.train) & set(split.test)
    masks = bench.load_masks([split.test[0], split.test[318]])
    assert masks.shape == (2, 128, 128) and masks.dtype == bool
    assert not masks[0].any() and masks[1].any()


def test_metrics_per_class_and_pooled(bench) -> None:
    classes = np.array(["Free"] * 4 + ["Blowhole", "Break", "Crack", "Fray", "Uneven"])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.15, 0.9, 0.9, 0.9])
    image = bench.image_aurocs(scores, classes)
    assert image["Blowhole"] == 1.0 and image["Break"] == 0.25
    assert image["overall"] == pytest.approx(17 / 20)
    masks = np.zeros((9, 128, 128), bool)
    masks[4:, :8] = True
    maps = masks.astype(np.float32)
    maps[0] = 1.0  # a normal frame that looks defective all over
    pixel = bench.pixel_aurocs(bench.to_metric_size(maps[:, ::2, ::2]), masks, classes)
    assert 0.9 < pixel["overall"] < 1.0 and pixel["Crack"] == pixel["Fray"]
