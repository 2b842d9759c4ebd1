"""MNIST-format IDX files and the noisy-MNIST benchmark images (../shared/benchmarks/noisy-mnist.md).

A noisy frame: an 84×84 zero canvas; the 28×28 digit resized (bilinear) to a square of
side s ~ U{28..84} and pasted at a uniformly random place fully inside; i.i.d. Gaussian
noise (σ = 0.2) added to every pixel; clipped to [0, 1]. One numpy Generator per split
draws, image by image in order: s, the top row, the left column, then the noise image.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CANVAS = 84
MIN_SIDE = 28
NOISE_SIGMA = 0.2
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
SPLIT_PREFIX = {"train": "train", "test": "t10k"}


class IdxError(ValueError):
    """A file that is not a readable IDX array."""


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file (raw or gzip) as a numpy array of its declared type and shape."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise IdxError(f"{path} is not an IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    if len(raw) - header != dtype.itemsize * int(np.prod(shape)):
        raise IdxError(f"{path}: {len(raw) - header} data bytes do not fit the shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz]")


@dataclass
class Split:
    images: np.ndarray  # (N, 28, 28) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64


def load_mnist(folder: str | os.PathLike[str], split: str) -> Split:
    """The ``train`` or ``test`` (t10k) split of an MNIST-format folder (MNIST, Fashion-MNIST)."""
    folder = Path(folder)
    prefix = SPLIT_PREFIX[split]
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise IdxError(f"{folder}: {split} images {images.shape} and labels {labels.shape} do not match")
    return Split(images.astype(np.float32) / 255.0, labels.astype(np.int64))


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


@dataclass
class OneClassTask:
    """Normal digit k: noisy training frames of k only, and the fixed labelled test subset."""

    train: np.ndarray  # (N, 1, 84, 84)
    test: np.ndarray  # (2000, 1, 84, 84), the same for every k
    test_labels: np.ndarray  # (2000,) 1 = anomalous (not k)
    test_digits: np.ndarray  # (2000,) the digit of each test frame


def one_class_task(
    folder: str | os.PathLike[str],
    normal: int,
    train_size: int | None = None,
    train_seed: int = 0,
    test_seed: int = 1,
    test_size: int = 2000,
) -> OneClassTask:
    """The benchmark's one-class split: the first ``train_size`` train images of ``normal``."""
    train, test = load_mnist(folder, "train"), load_mnist(folder, "test")
    digits = train.images[train.labels == normal][:train_size]
    test_digits = test.labels[:test_size]
    return OneClassTask(
        train=noisy_frames(digits, train_seed),
        test=noisy_frames(test.images[:test_size], test_seed),
        test_labels=(test_digits != normal).astype(np.int64),
        test_digits=test_digits,
    )
