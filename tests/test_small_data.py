"""Training from tens of frames: held-out normals, epochs long enough, augmentation that keeps normal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.config import FrameSpec
from inspector.training import TrainOptions, augment, epoch_order, split_validation, train

from .conftest import TINY_SIZE, blob_frames, tiny_config


@pytest.mark.parametrize(("n", "held_out"), [(3, 0), (4, 0), (5, 2), (8, 2), (10, 2), (30, 3), (100, 10)])
def test_validation_split_keeps_unseen_frames_for_small_sets(n: int, held_out: int) -> None:
    train_idx, val_idx = split_validation(n, 0.1, seed=0)
    assert len(val_idx) == held_out and len(train_idx) == n - held_out
    assert sorted(np.r_[train_idx, val_idx]) == list(range(n))
    assert len(split_validation(n, 0.0, seed=0)[1]) == 0


def test_epoch_repeats_a_small_set_but_not_a_large_one() -> None:
    generator = torch.Generator().manual_seed(0)
    order = epoch_order(6, 64, generator)
    assert len(order) == 66 and (torch.bincount(order) == 11).all()
    assert sorted(epoch_order(300, 64, generator).tolist()) == list(range(300))


def test_augmentation_is_per_frame_and_keeps_holes_dark() -> None:
    x = torch.from_numpy(blob_frames(1)).repeat(16, 1, 1, 1)
    x[:, :, :4] = 0  # a band of depth holes / black pixels
    options = TrainOptions(shift=3, gain=0.1)
    out = augment(x, options, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert len({tuple(frame.flatten()[:200].tolist()) for frame in out}) > 8  # frames differ
    assert (out[:, :, 0] == 0).all()  # shifted by at most 3 and scaled: the top row stays black
    again = augment(x, options, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_ten_frames_train_with_held_out_threshold_and_early_stopping() -> None:
    frames = blob_frames(10)
    options = TrainOptions(epochs=4, patience=1, shift=1, gain=0.05, min_epoch_frames=48, device="cpu")
    checkpoint = train(frames, tiny_config(batch_size=8), FrameSpec(image_size=TINY_SIZE), options)
    meta = checkpoint.metadata
    assert meta["train_frames"] == 8 and meta["validation_frames"] == 2
    assert meta["threshold_from"] == "held-out frames"
    assert 1 <= meta["best_epoch"] <= meta["epochs_run"] <= 4
    assert all(np.isfinite(v) for v in checkpoint.thresholds.values())
