"""IDX reading and the noisy-MNIST one-class task (bench/mnist.py)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from bench.mnist import IdxError, load_mnist, one_class_task, read_idx
from inspector.sample_data import noisy_frames
from tests.conftest import SHARED_DATA

MNIST = SHARED_DATA / "mnist"


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def fake_mnist(folder: Path, compress: bool, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    suffix = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_reads_raw_and_gzip_idx(tmp_path: Path, compress: bool) -> None:
    images, labels = fake_mnist(tmp_path, compress)
    split = load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(split.images, images / np.float32(255))
    np.testing.assert_array_equal(split.labels, labels)
    assert split.images.dtype == np.float32


def test_rejects_a_file_that_is_not_idx(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"not an idx file at all")
    with pytest.raises(IdxError):
        read_idx(tmp_path / "x")
    write_idx(tmp_path / "short", np.zeros((2, 3), np.uint8), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(IdxError):
        read_idx(tmp_path / "short")


def test_one_class_task_labels_the_normal_digit(tmp_path: Path) -> None:
    _, labels = fake_mnist(tmp_path, compress=True)
    task = one_class_task(tmp_path, normal=3, test_size=10)
    assert len(task.train) == (labels == 3).sum()
    np.testing.assert_array_equal(task.test_labels, labels[:10] != 3)
    np.testing.assert_array_equal(task.test_digits, labels[:10])


@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/data/mnist is absent")
def test_real_mnist_test_subset() -> None:
    split = load_mnist(MNIST, "test")
    assert split.images.shape == (10000, 28, 28) and split.labels.shape == (10000,)
    assert 150 < (split.labels[:2000] == 0).sum() < 250
    frames = noisy_frames(split.images[:4], seed=1)
    assert frames.tobytes() == noisy_frames(split.images[:4], seed=1).tobytes()
