"""Reading a frame from disk and turning it into a model input, in one place.

Training, the watcher, the workers and the dashboard all call :func:`load_frame`, so a
frame means the same thing everywhere. A model input is a float32 array (C, H, W) in
[0, 1]. Depth frames are in sensor units; zero means "no measurement" (a hole), which
is mapped to the far end of the working range so that it never looks "very near".
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from inspector.config import FrameSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy"}


class FrameError(ValueError):
    """A file that cannot become a frame; the message says why, for the quarantine."""


def is_frame_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode file bytes to a raw array (H, W) or (H, W, C), checking size before decoding."""
    if not data:
        raise FrameError("empty file")
    if name.lower().endswith(".npy"):
        import io

        try:
            raw = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FrameError(f"not a readable .npy array: {exc}") from exc
    else:
        size = _png_size(data) or _jpeg_size(data)
        if size and size[0] * size[1] > max_pixels:
            raise FrameError(f"image of {size[0]}x{size[1]} pixels exceeds the limit of {max_pixels}")
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise FrameError("not a readable image (corrupt, truncated or unsupported format)")
    if raw.ndim not in (2, 3) or raw.shape[0] == 0 or raw.shape[1] == 0:
        raise FrameError(f"unusable image shape {raw.shape}")
    if raw.ndim == 3 and raw.shape[2] not in (1, 3, 4):
        raise FrameError(f"unsupported channel count {raw.shape[2]}")
    if raw.shape[0] * raw.shape[1] > max_pixels:
        raise FrameError(f"image of {raw.shape[1]}x{raw.shape[0]} pixels exceeds the limit of {max_pixels}")
    return raw


def _depth_to_unit(raw: np.ndarray, spec: FrameSpec) -> np.ndarray:
    if raw.ndim == 3:
        if raw.shape[2] != 1:
            raise FrameError(f"depth frames have one channel, this one has {raw.shape[2]}")
        raw = raw[..., 0]
    if raw.dtype not in (np.uint16, np.float32, np.float64, np.int32, np.uint32):
        raise FrameError(f"depth frames must be 16-bit or float, not {raw.dtype}")
    mm = raw.astype(np.float32) * spec.depth_unit_mm
    holes = ~np.isfinite(mm) | (raw <= 0)
    near, far = spec.near_mm, spec.far_mm
    if far <= near:
        raise FrameError(f"depth working range is empty (near {near} mm, far {far} mm)")
    # Near is bright (1), far and holes are dark (0): a hole never looks like a close object.
    unit = np.clip((far - np.clip(mm, near, far)) / (far - near), 0.0, 1.0)
    unit[holes] = 0.0
    if spec.fill_holes and holes.any() and not holes.all():
        unit = cv2.inpaint(unit, holes.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return unit.astype(np.float32)


def _to_unit(raw: np.ndarray) -> np.ndarray:
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / 255.0
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / 65535.0
    if raw.dtype in (np.float32, np.float64):
        return np.clip(raw.astype(np.float32), 0.0, 1.0)
    raise FrameError(f"unsupported pixel type {raw.dtype}")


def preprocess(raw: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Raw decoded array -> float32 (C, H, W) in [0, 1] at the model's resolution."""
    if spec.roi is not None:
        x, y, w, h = spec.roi
        if x < 0 or y < 0 or x + w > raw.shape[1] or y + h > raw.shape[0]:
            raise FrameError(
                f"region of interest {spec.roi} lies outside the {raw.shape[1]}x{raw.shape[0]} image"
            )
        raw = raw[y : y + h, x : x + w]
    if spec.mode == "depth":
        img = _depth_to_unit(raw, spec)
    else:
        img = _to_unit(raw)
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        if spec.mode == "grey" and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif spec.mode == "colour":
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB if img.ndim == 2 else cv2.COLOR_BGR2RGB)
    size = spec.image_size
    if img.shape[:2] != (size, size):
        shrinking = img.shape[0] > size or img.shape[1] > size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = img[None]
    else:
        img = img.transpose(2, 0, 1)
    return np.ascontiguousarray(img, dtype=np.float32)


def load_frame(path: str | Path, spec: FrameSpec) -> np.ndarray:
    """Read and preprocess one file; raises FrameError with a reason a person can act on."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FrameError(f"cannot read file: {exc.strerror or exc}") from exc
    return preprocess(decode(data, path.name, spec.max_pixels), spec)


def find_frames(root: str | Path) -> list[Path]:
    """Image files under root, recursively, sorted; dotfiles and temporary files skipped."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and is_frame_file(p)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def to_uint8(img: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) float in [0, 1] -> displayable uint8 (H, W[, 3]) in BGR order for cv2."""
    arr = np.clip(img, 0.0, 1.0)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else cv2.cvtColor(arr.transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
    return (arr * 255.0 + 0.5).astype(np.uint8)
