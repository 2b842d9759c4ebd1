"""Each method learns, is reproducible, and survives a save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.config import FrameSpec
from inspector.detector import Checkpoint, CheckpointError, Detector
from inspector.frames import FrameError
from inspector.training import TrainingError, TrainOptions, split_frames, split_validation, train

from ..conftest import TINY_SIZE, blob_frames, tiny_config

SPEC = FrameSpec(image_size=TINY_SIZE)


@pytest.mark.parametrize(
    ("family", "loss"),
    [("vae", "nll"), ("anogan", "d"), ("vaegan", "pixel")],
)
def test_training_lowers_the_loss(family: str, loss: str) -> None:
    history = []
    config = tiny_config(family, lr=2e-3)
    train(
        blob_frames(96),
        config,
        SPEC,
        TrainOptions(epochs=6, device="cpu"),
        lambda _e, losses: history.append(losses),
    )
    assert history[-1][loss] < history[0][loss]


def test_same_seed_same_model_and_round_trip(tmp_path: Path) -> None:
    frames = blob_frames(48)
    a = train(frames, tiny_config(), SPEC, TrainOptions(epochs=1, seed=3, device="cpu"))
    b = train(frames, tiny_config(), SPEC, TrainOptions(epochs=1, seed=3, device="cpu"))
    c = train(frames, tiny_config(), SPEC, TrainOptions(epochs=1, seed=4, device="cpu"))
    assert a.version == b.version != c.version
    a.save(tmp_path / "m.pt")
    loaded = Checkpoint.load(tmp_path / "m.pt")
    assert loaded.version == a.version and loaded.thresholds == a.thresholds
    for method in ("vaegan", "vaegan-attn"):
        before = [d.score for d in Detector(a, method=method, device="cpu").score_arrays(frames[:5])]
        after = [d.score for d in Detector(loaded, method=method, device="cpu").score_arrays(frames[:5])]
        assert before == after


def test_default_threshold_is_a_high_quantile_of_normal_scores(tiny_checkpoint: Path) -> None:
    detector = Detector.load(tiny_checkpoint, device="cpu")
    scores = [d.score for d in detector.score_arrays(blob_frames(40, seed=9))]
    assert np.mean(np.array(scores) > detector.threshold) < 0.25


def test_scoring_in_batches_matches_one_by_one(tiny_checkpoint: Path) -> None:
    frames = blob_frames(7, seed=2)
    batched = Detector.load(tiny_checkpoint, device="cpu", batch_size=3).score_arrays(frames)
    single = Detector.load(tiny_checkpoint, device="cpu", batch_size=1).score_arrays(frames)
    assert np.allclose([d.score for d in batched], [d.score for d in single], atol=1e-6)
    first = batched[0]
    assert first.reconstruction.shape == (1, TINY_SIZE, TINY_SIZE)
    assert first.error.shape == first.attention.shape == (TINY_SIZE, TINY_SIZE)


def test_wrong_shapes_and_bad_checkpoints_are_clear_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    detector = Detector.load(tiny_checkpoint, device="cpu")
    with pytest.raises(FrameError, match="do not fit this model"):
        detector.score_arrays(np.zeros((2, 3, TINY_SIZE, TINY_SIZE), np.float32))
    with pytest.raises(CheckpointError, match="not found"):
        Checkpoint.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a readable"):
        Checkpoint.load(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="needs a 'vae' model"):
        Detector.load(tiny_checkpoint, method="vae")
    with pytest.raises(TrainingError):
        train(np.zeros((0, 1, TINY_SIZE, TINY_SIZE), np.float32), tiny_config(), SPEC, TrainOptions())


def test_a_monitor_chooses_the_epoch_kept_and_when_to_stop() -> None:
    """The monitor's figure (higher = better) replaces the validation loss: its best epoch's
    weights are kept, and patience counts from that epoch."""
    figures = iter([0.1, 0.9, 0.2, 0.3, 0.95])
    seen: list[dict] = []

    def monitor(model, held_out) -> float:
        assert not model.training and len(held_out) == 5  # 10% of 48, at least two
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(figures)

    options = TrainOptions(epochs=5, patience=2, device="cpu")
    checkpoint = train(blob_frames(48), tiny_config(), SPEC, options, monitor=monitor)
    assert checkpoint.metadata["epochs_run"] == 4 and checkpoint.metadata["best_epoch"] == 2
    assert [h["monitor"] for h in checkpoint.metadata["history"]] == [0.1, 0.9, 0.2, 0.3]
    assert all(v.equal(seen[1][k]) for k, v in checkpoint.state_dict.items())


def test_a_split_can_be_fixed_and_frames_to_remember_always_train() -> None:
    """``split_frames``: the drawn split unless told; frames to remember are never held out;
    a given split is kept as it is (a retraining holds out what its live model held out)."""
    options = TrainOptions(val_fraction=0.2, seed=1)
    drawn = split_frames(20, options)
    np.testing.assert_array_equal(np.concatenate(drawn), np.concatenate(split_validation(20, 0.2, 1)))
    remember = np.arange(20) >= 10
    train_idx, val_idx = split_frames(20, options, remember=remember)
    assert len(val_idx) == 2 and (val_idx < 10).all() and set(range(10, 20)) <= set(train_idx)
    heldout = np.isin(np.arange(20), [3, 7])
    train_idx, val_idx = split_frames(20, options, heldout, remember)
    assert val_idx.tolist() == [3, 7] and sorted(train_idx) == sorted(set(range(20)) - {3, 7})
    with pytest.raises(TrainingError, match="cannot be held out"):
        split_frames(20, options, np.arange(20) == 15, remember)
    with pytest.raises(TrainingError, match="for 20 frames"):
        split_frames(20, options, remember=remember[:5])
