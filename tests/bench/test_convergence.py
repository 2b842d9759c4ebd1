"""The label-free stopping rule: synthetic anomalies from held-out normals, scored every epoch."""

from __future__ import annotations

import numpy as np
import pytest

from bench.convergence import KINDS, StoppingRule, corrupt, synthetic_validation, train_to_convergence
from inspector.config import FrameSpec
from tests.conftest import TINY_SIZE, blob_frames, tiny_config


@pytest.mark.parametrize("kind", KINDS)
def test_each_anomaly_changes_the_object_and_keeps_the_frame(kind: str) -> None:
    frame = blob_frames(1, size=48)[0]
    frame[:, 20:30, 24:27] = 1.0  # a bar, so that flips and mirrors change the frame
    changed = corrupt(frame, kind, np.random.default_rng(0))
    assert changed.shape == frame.shape and changed.dtype == frame.dtype
    assert 0 <= changed.min() and changed.max() <= 1 and not np.array_equal(changed, frame)
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        corrupt(frame, "melt", np.random.default_rng(0))


def test_validation_set_is_the_normals_then_one_anomaly_of_each_kind() -> None:
    normals = blob_frames(3)
    frames, labels = synthetic_validation(normals)
    assert frames.shape == (15, 1, TINY_SIZE, TINY_SIZE)
    assert labels.tolist() == [0] * 3 + [1] * 12
    np.testing.assert_array_equal(frames[:3], normals)
    again, _ = synthetic_validation(normals)
    np.testing.assert_array_equal(frames, again)  # the same set every time


def test_training_keeps_the_best_epoch_by_validation_auroc() -> None:
    rule = StoppingRule(patience=2, max_epochs=3, normals=4)
    config = tiny_config("vaegan", lr=2e-3)
    model, record = train_to_convergence(
        blob_frames(48), config, FrameSpec(image_size=TINY_SIZE), rule, 0, "cpu"
    )
    curves = record["curves"]["validation_auroc"]
    assert set(curves) == {"vaegan", "vaegan-attn"} and not model.training
    assert len(curves["vaegan"]) == record["epochs_run"] <= 3
    means = np.mean([curves["vaegan"], curves["vaegan-attn"]], axis=0)
    assert record["best_epoch"] == int(np.argmax(means)) + 1
