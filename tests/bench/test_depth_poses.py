"""The depth-poses protocol: interleaved folds, both directions, every normal frame held out once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import depth_poses as poses
from bench.convergence import StoppingRule
from tests.conftest import SHARED_DATA

HAND = SHARED_DATA / "depth" / "hand-sr305"
pytestmark = pytest.mark.skipif(not HAND.is_dir(), reason="needs ../shared/data/depth")


@pytest.mark.parametrize(("direction", "normals", "anomalies"), [("palm", 8, 11), ("others", 11, 8)])
def test_folds_hold_out_each_normal_frame_once(direction: str, normals: int, anomalies: int) -> None:
    everything = poses.load_pose(HAND / poses.POSES[direction])
    held_out = []
    for fold in range(poses.FOLDS):
        train, test, labels = poses.fold_split(HAND, direction, fold)
        assert len(train) + (labels == 0).sum() == normals and (labels == 1).sum() == anomalies
        assert test.shape[1:] == train.shape[1:] == (1, 64, 64)
        held_out += [
            next(i for i, f in enumerate(everything) if np.array_equal(f, t)) for t in test[labels == 0]
        ]
    assert sorted(held_out) == list(range(normals))
    assert held_out[:2] == [0, 4]  # interleaved: frames 0 and 4 in fold 0


def test_a_run_stores_scores_labels_and_curves(tmp_path: Path) -> None:
    rule = StoppingRule(patience=1, max_epochs=1)
    result = poses.run_job(HAND, poses.Run("palm", 1, 0, "vaegan"), rule, "cpu")
    assert set(result["auc"]) == {"vaegan", "vaegan-attn"} and result["epochs_run"] == 1
    assert len(result["scores"]["vaegan"]) == len(result["labels"]) == 13
    assert result["augmentation"]["shift"] == 3 and result["settings"]["width"] == 16


def test_plan_runs_seed_zero_of_every_method_first() -> None:
    plan = poses.plan()
    assert len(plan) == len(set(plan))
    first = [r for r in plan if r.seed == 0]
    assert plan[: len(first)] == first and {r.method for r in first} == {*poses.SETTINGS, *poses.PEERS}
