"""Turning a detection into pictures a person can read: input, reconstruction, error, attention.

Heat maps are scaled per frame (the score, not the picture, carries the magnitude) and
laid over the input so the operator sees *where* on the part the model looks. A batch is
rendered with one OpenCV call per step on the frames stacked into one tall image, which
is the same arithmetic as frame by frame at a fraction of the per-call overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inspector.detector import Detection

MAP_KINDS = ("input", "reconstruction", "error", "attention")


def _uint8_batch(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> uint8 (N, H, W) grey or (N, H, W, 3) BGR, as to_uint8."""
    arr = np.clip(images, 0.0, 1.0)
    arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)[..., ::-1]
    return (arr * 255.0 + 0.5).astype(np.uint8)


def heat_overlay(heat: np.ndarray, frames: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """JET heat maps of ``heat`` (N, H, W) blended over the frames (N, C, H, W): BGR uint8 (N, H, W, 3)."""
    n, h, w = heat.shape
    peak = np.maximum(heat.reshape(n, -1).max(axis=1), 1e-8)[:, None, None]
    coloured = cv2.applyColorMap(_uint8_batch((heat / peak)[:, None]).reshape(n * h, w), cv2.COLORMAP_JET)
    base = _uint8_batch(frames).reshape(n * h, w, -1)
    if base.shape[2] == 1:
        base = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(coloured, alpha, base, 1 - alpha, 0).reshape(n, h, w, 3)


def render_batch(frames: np.ndarray, detections: Sequence[Detection]) -> list[dict[str, np.ndarray]]:
    """The pictures of each detection of a batch (N, C, H, W), by kind (attention where there is one)."""
    pictures = {
        "input": _uint8_batch(frames),
        "reconstruction": _uint8_batch(np.stack([d.reconstruction for d in detections])),
        "error": heat_overlay(np.stack([d.error for d in detections]), frames),
    }
    if detections and detections[0].attention is not None:
        pictures["attention"] = heat_overlay(np.stack([d.attention for d in detections]), frames)
    return [{kind: images[i] for kind, images in pictures.items()} for i in range(len(detections))]


def render_maps(frame: np.ndarray, detection: Detection) -> dict[str, np.ndarray]:
    """The pictures of one detection, by kind (attention only where the method has one)."""
    return render_batch(frame[None], [detection])[0]


# Stored PNG (no filter, no deflate): about 20x faster to write than OpenCV's default for
# these small maps, for about 1.6x the bytes (heat overlays hardly compress anyway).
FAST_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def encode_png(image: np.ndarray, fast: bool = False) -> bytes:
    """PNG bytes; ``fast`` trades size for speed (the pipeline's maps)."""
    ok, buffer = cv2.imencode(".png", image, FAST_PNG if fast else [])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def write_maps(directory: Path, stem: str, frame: np.ndarray, detection: Detection) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, image in render_maps(frame, detection).items():
        path = directory / f"{stem}.{kind}.png"
        path.write_bytes(encode_png(image))
        written[kind] = path
    return written
