"""IDX reading and the noisy-MNIST builder (inspector.data)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from inspector.data import IdxError, load_mnist, noisy_frames, one_class_task, read_idx

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


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
