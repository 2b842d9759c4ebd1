"""MNIST-format IDX files and the noisy-MNIST one-class task (../shared/benchmarks/noisy-mnist.md).

The frames are rendered as the demo's sample data is (inspector.sample_data.noisy_frames),
one numpy Generator per split.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.sample_data import noisy_frames

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
