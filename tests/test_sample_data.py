"""The noisy-MNIST rendering of the demo's sample data (and of the benchmark's frames)."""

from __future__ import annotations

import numpy as np

from inspector.sample_data import noisy_frames


def test_noisy_frames_follow_the_protocol() -> None:
    digits = np.ones((300, 28, 28), np.float32)  # the pasted square is then the whole s×s patch
    frames = noisy_frames(digits, seed=3)
    assert frames.shape == (300, 1, 84, 84) and frames.dtype == np.float32
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    # Above 0.5: 99.4% of the patch (1 + noise), 0.6% of the background (noise > 2.5σ).
    inside = (frames[:, 0] > 0.5).sum(axis=2) > 10
    sides = inside.sum(axis=1)
    assert sides.min() >= 28 and sides.max() <= 84 and sides.std() > 10
    tops = inside.argmax(axis=1)
    assert np.all(tops + sides <= 84) and np.unique(tops).size > 20
    # Background: zero plus N(0, 0.2) clipped at 0 has mean 0.2/√(2π) ≈ 0.08.
    outside = frames[:, 0][~np.repeat(inside[:, :, None], 84, axis=2)]
    assert abs(outside.mean() - 0.2 / np.sqrt(2 * np.pi)) < 0.01


def test_same_seed_same_bits_other_seed_other_frames() -> None:
    digits = np.random.default_rng(1).random((5, 28, 28), dtype=np.float32)
    a, b, c = noisy_frames(digits, 7), noisy_frames(digits, 7), noisy_frames(digits, 8)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)
