"""The strips benchmark's frames: three real tiles stacked, the defective one's mask in its third."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench import tiles_in_strips
from bench.magnetic_tile import CLASSES, protocol_split
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "magnetic-tile"


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/magnetic-tile")
def test_a_strip_stacks_three_tiles_and_masks_only_the_defective_one(tmp_path: Path) -> None:
    split = protocol_split(DATA)
    defective = next(p for p, c in zip(split.test, split.classes, strict=True) if c == "Blowhole")
    target = tmp_path / "test" / "one.png"
    tiles_in_strips.write_strip(target, [split.train[0], defective, split.train[1]], defective=1)
    strip = cv2.imread(str(target), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(tmp_path / "masks" / "one.png"), cv2.IMREAD_GRAYSCALE)
    assert strip.shape == mask.shape == tiles_in_strips.STRIP
    third = tiles_in_strips.THIRD
    np.testing.assert_array_equal(strip[:third], tiles_in_strips.tile(split.train[0]))
    assert mask[third : 2 * third].any() and not mask[:third].any() and not mask[2 * third :].any()


def test_the_report_renders_both_runs_and_the_peers() -> None:
    figures = {"overall": 0.8, **dict.fromkeys(CLASSES, 0.7)}
    run = {
        "method": "patch-ensemble",
        "frame_shape": [404, 161],
        "estimate": 0.9,
        "image": figures,
        "pixel": figures,
        "score_cpu_ms": 150,
        "wall_seconds": 60,
        "cpu_seconds": 90,
        "output": "chose patch-memory",
    }
    report = tiles_in_strips.render(
        {
            "default": run,
            "fine": {**run, "frame_shape": [809, 323]},
            "peers": {"glimpse_knn": figures},
            "strips": {"train": 211, "test": {"Free": 106, "Crack": 57}},
            "commit": "abc",
            "machine": "m",
            "command": "c",
            "finished_at": "t",
        }
    )
    assert "| **default command** (404×161, `patch-ensemble`) | 0.800 |" in report
    assert "809×323" in report and "glimpse_knn (peer, 320×128) | 0.800" in report
    assert "test: Free 106, Crack 57" in report
