"""Hyper-parameter selection for the noisy-MNIST table without test labels.

For a normal digit k, the validation set is built from *training* images of k that the
model never saw: half stay normal, half get a synthetic defect (flipped, mirrored, a
block erased, or a stroke added) before the noisy-MNIST rendering. Candidates are
compared by their ROC-AUC on this set, averaged over the selection digits.
"""

from __future__ import annotations

import cv2
import numpy as np

from inspector.data import load_mnist, noisy_frames

CORRUPTIONS = ("flip", "mirror", "erase", "stroke")


def corrupt(digit: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A synthetic defect on a 28×28 digit in [0, 1]."""
    if kind == "flip":
        return digit[::-1].copy()
    if kind == "mirror":
        return digit[:, ::-1].copy()
    out = digit.copy()
    if kind == "erase":
        ys, xs = np.nonzero(digit > 0.5)
        i = rng.integers(len(ys))
        out[max(0, ys[i] - 5) : ys[i] + 5, max(0, xs[i] - 5) : xs[i] + 5] = 0.0
        return out
    (x0, y0), (x1, y1) = rng.integers(4, 24, size=(2, 2))
    return np.maximum(out, cv2.line(np.zeros_like(out), (int(x0), int(y0)), (int(x1), int(y1)), 1.0, 2))


def validation_set(
    folder: str, normal: int, skip: int, size: int = 500, seed: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (2·size, 1, 84, 84) and labels (1 = corrupted) from unseen training images of k."""
    train = load_mnist(folder, "train")
    digits = train.images[train.labels == normal][skip : skip + size]
    rng = np.random.default_rng(seed)
    corrupted = np.stack([corrupt(d, CORRUPTIONS[i % len(CORRUPTIONS)], rng) for i, d in enumerate(digits)])
    frames = noisy_frames(np.concatenate([digits, corrupted]), seed)
    return frames, np.repeat([0, 1], len(digits))
