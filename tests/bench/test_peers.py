"""The classic peers: trained on normal frames only, they rank an odd frame above normal ones."""

from __future__ import annotations

import numpy as np
import pytest

from bench.peers import PEERS, blurred, glimpses, knn_distance, pca_error
from tests.conftest import blob_frames


def test_features_are_28_by_28_whatever_the_frame_size() -> None:
    frames = blob_frames(3, size=84)
    assert blurred(frames).shape == glimpses(frames).shape == (3, 784)
    assert blurred(frames[:, 0]).shape == (3, 784)  # (N, H, W) is taken too
    with pytest.raises(ValueError, match="frames must be"):
        blurred(np.zeros((2, 2)))


def test_pca_and_knn_measure_distance_from_the_training_set() -> None:
    train = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    train[:, 3:] = 0  # the training set spans three dimensions
    test = np.zeros((2, 5), np.float32)
    test[1, 4] = 3.0
    assert pca_error(train, test, components=3)[1] == pytest.approx(9.0, rel=1e-4)
    assert knn_distance(train, train[:1], k=1)[0] == pytest.approx(0.0, abs=1e-5)
    assert len(knn_distance(train[:3], test)) == 2  # fewer training frames than neighbours


@pytest.mark.parametrize("name", sorted(PEERS))
def test_each_peer_scores_a_dark_frame_above_normal_ones(name: str) -> None:
    train, normal = blob_frames(30, size=56), blob_frames(5, size=56, seed=1)
    odd = normal[:1] * 0.2
    scores = PEERS[name](train, np.concatenate([normal, odd]))
    assert scores.shape == (6,) and scores[-1] > scores[:-1].max()
