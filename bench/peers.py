"""Classic peers for the benchmark tables: what a deep detector must beat, in a few lines each.

Every peer is a function (train_frames, test_frames) → anomaly scores (higher = more
anomalous), frames (N, C, H, W) or (N, H, W) in [0, 1], trained on normal frames only:

- ``blur_pca``: Gaussian blur σ 2, area-resized to 28×28, PCA (32 components), score = the
  squared reconstruction error.
- ``blur_knn``: the same features, score = mean Euclidean distance to the 5 nearest training
  frames.
- ``glimpse_knn``: the glimpse of ``inspector.models.glimpse`` (object found with blur σ 1 and
  threshold 0.25 above the median, square box filled to 20/28, 28×28 of the σ 1.5-blurred
  frame), then the same 5-NN distance.

These are the baselines of ../shared/benchmarks/noisy-mnist.md; fewer training frames than
components or neighbours use as many as there are (small-data benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from inspector.models.blocks import gaussian_blur
from inspector.models.glimpse import glimpse, locate

SIDE = 28  # the features' side: MNIST's own
COMPONENTS = 32
NEIGHBOURS = 5

Peer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _tensor(frames: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(frames, dtype=np.float32))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"frames must be (N, C, H, W) or (N, H, W), not {tuple(x.shape)}")
    return x


def blurred(frames: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Blur σ, then area-resize to 28×28: (N, C·784) features."""
    x = gaussian_blur(_tensor(frames), sigma)
    return F.interpolate(x, size=(SIDE, SIDE), mode="area").flatten(1).numpy()


def glimpses(frames: np.ndarray) -> np.ndarray:
    """The 28×28 glimpse of each frame: (N, C·784) features."""
    x = _tensor(frames)
    theta = locate(x, sigma=1.0, threshold=0.25, fill=20 / 28)
    return glimpse(x, theta, SIDE, sigma=1.5).flatten(1).numpy()


def pca_error(train: np.ndarray, test: np.ndarray, components: int = COMPONENTS) -> np.ndarray:
    """Squared error of each test vector after projection on the training set's principal
    components (at most one fewer than the training vectors)."""
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    basis = vt[: max(1, min(components, len(train) - 1))]
    centred = test - mean
    return ((centred - centred @ basis.T @ basis) ** 2).sum(axis=1)


def knn_distance(train: np.ndarray, test: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Mean Euclidean distance of each test vector to its k nearest training vectors."""
    distances = torch.cdist(torch.from_numpy(test)[None], torch.from_numpy(train)[None])[0]
    return distances.topk(min(k, len(train)), dim=1, largest=False).values.mean(dim=1).numpy()


def blur_pca(train_frames: np.ndarray, test_frames: np.ndarray) -> np.ndarray:
    return pca_error(blurred(train_frames), blurred(test_frames))


def blur_knn(train_frames: np.ndarray, test_frames: np.ndarray) -> np.ndarray:
    return knn_distance(blurred(train_frames), blurred(test_frames))


def glimpse_knn(train_frames: np.ndarray, test_frames: np.ndarray) -> np.ndarray:
    return knn_distance(glimpses(train_frames), glimpses(test_frames))


PEERS: dict[str, Peer] = {"blur_pca": blur_pca, "blur_knn": blur_knn, "glimpse_knn": glimpse_knn}
