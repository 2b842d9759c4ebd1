"""Maps of a detection: stored as data (uint8 planes), drawn as pictures a person can read.

Plain arrays in, plain arrays out: no model and no torch here, so the dashboard that draws
them never loads one. The planes of a frame are its input and reconstruction as images,
and its error, attention and anomaly map (what the score is made of) scaled so each frame's
peak is 255 (the score, not the picture, carries the magnitude). The pipeline stores the
planes; a picture (a heat map laid over the input, so the operator sees *where* on the part
the model looks) is drawn only when someone looks: by the dashboard, or by
``inspector score --maps``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

IMAGE_KINDS = ("input", "reconstruction")  # (N, C, H, W) in [0, 1]
HEAT_KINDS = ("error", "attention", "anomaly")  # (N, H, W), any scale
MAP_KINDS = IMAGE_KINDS + HEAT_KINDS


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images (..., C, H, W) in [0, 1] -> uint8 (..., H, W) grey or (..., H, W, 3) BGR (for OpenCV)."""
    arr = np.clip(images, 0.0, 1.0)
    arr = arr[..., 0, :, :] if arr.shape[-3] == 1 else np.moveaxis(arr, -3, -1)[..., ::-1]
    return np.ascontiguousarray((arr * 255.0 + 0.5).astype(np.uint8))


def _peak_scaled(heat: np.ndarray) -> np.ndarray:
    """(N, H, W) -> uint8 with each frame's maximum at 255."""
    peak = np.maximum(heat.reshape(len(heat), -1).max(axis=1), 1e-8)[:, None, None]
    return (np.clip(heat / peak, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def map_planes(maps: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The uint8 planes of a batch's maps (by kind, see MAP_KINDS), frame by frame."""
    planes = {kind: to_uint8(a) if kind in IMAGE_KINDS else _peak_scaled(a) for kind, a in maps.items()}
    frames = len(next(iter(planes.values()), []))
    return [{kind: images[i] for kind, images in planes.items()} for i in range(frames)]


def heat_overlay(heat: np.ndarray, base: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A JET heat map of the uint8 plane ``heat`` (H, W) blended over the uint8 image ``base``: BGR."""
    if base.ndim == 2:
        base = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(cv2.applyColorMap(heat, cv2.COLORMAP_JET), alpha, base, 1 - alpha, 0)


def picture(kind: str, planes: dict[str, np.ndarray]) -> np.ndarray:
    """What a person sees of one kind: the image itself, or its heat map over the input."""
    return heat_overlay(planes[kind], planes["input"]) if kind in HEAT_KINDS else planes[kind]


def render_maps(maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The pictures of one frame's maps (a batch of one, by kind)."""
    planes = map_planes(maps)[0]
    return {kind: picture(kind, planes) for kind in planes}


# Stored PNG (no filter, no deflate): about 20x faster to write than OpenCV's default for
# these small maps, for about 1.6x the bytes (heat overlays hardly compress anyway).
FAST_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


def encode_png(image: np.ndarray, fast: bool = False) -> bytes:
    """PNG bytes; ``fast`` trades size for speed (the pipeline's maps)."""
    ok, buffer = cv2.imencode(".png", image, FAST_PNG if fast else [])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """The uint8 image of PNG bytes, grey or BGR as it was encoded."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("not a PNG image")
    return image


def at_resolution(maps: Mapping[str, np.ndarray], frame: np.ndarray) -> dict[str, np.ndarray]:
    """A batch of one's maps at the resolution of ``frame`` (1, C, h, w), the frame as its file holds
    it: that frame is the input, every other map is resized to it (bilinear). A model sees a large
    frame scaled down; its maps come back over the file's own pixels."""
    shape = frame.shape[-2:]
    resized = {"input": frame}
    for kind, array in maps.items():
        if kind != "input":
            planes = array.reshape(-1, *array.shape[-2:])
            size = (shape[1], shape[0])  # OpenCV's (width, height)
            out = np.stack([cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in planes])
            resized[kind] = out.reshape(*array.shape[:-2], *shape)
    return resized


def write_maps(directory: Path, stem: str, maps: Mapping[str, np.ndarray]) -> dict[str, Path]:
    """The pictures of one frame's maps (a batch of one, by kind) as PNG files ``stem.kind.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, image in render_maps(maps).items():
        path = directory / f"{stem}.{kind}.png"
        path.write_bytes(encode_png(image))
        written[kind] = path
    return written
