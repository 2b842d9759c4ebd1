"""Turning a detection into pictures a person can read: input, reconstruction, error, attention.

Heat maps are scaled per frame (the score, not the picture, carries the magnitude) and
laid over the input so the operator sees *where* on the part the model looks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.detector import Detection
from inspector.frames import to_uint8

MAP_KINDS = ("input", "reconstruction", "error", "attention")


def heat_overlay(heat: np.ndarray, frame: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A JET heat map of ``heat`` (H, W) blended over the frame (C, H, W): BGR uint8."""
    scaled = heat / max(float(heat.max()), 1e-8)
    coloured = cv2.applyColorMap(to_uint8(scaled), cv2.COLORMAP_JET)
    base = to_uint8(frame)
    if base.ndim == 2:
        base = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(coloured, alpha, base, 1 - alpha, 0)


def render_maps(frame: np.ndarray, detection: Detection) -> dict[str, np.ndarray]:
    """The pictures of one detection, by kind (attention only where the method has one)."""
    images = {
        "input": to_uint8(frame),
        "reconstruction": to_uint8(detection.reconstruction),
        "error": heat_overlay(detection.error, frame),
    }
    if detection.attention is not None:
        images["attention"] = heat_overlay(detection.attention, frame)
    return images


def encode_png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
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
