"""Synthetic anomalies made from normal frames: what training validates its choices on, label-free.

A user brings normal frames only. To compare detectors without real anomalies, each
held-out normal frame is damaged in every one of six ways, all placed on the frame's object
(its bounding box, as ``models.glimpse`` finds it: the whole frame for a surface) and sized
relative to it, so that they mean the same at any scale and for any kind of frame:

- ``paste``: a square from another normal frame's object, pasted elsewhere (CutPaste);
- ``scratch``: a thin line, dark or bright;
- ``blob``: a soft-edged spot, darker or brighter (a stain, a dent's shading);
- ``band``: a thin soft stripe across the object, darker or brighter;
- ``missing``: a square replaced by the frame's background level (a missing part);
- ``shift``: a soft region of the object moved nearer or farther (in depth frames; a change
  of brightness elsewhere), holes left as they are.

Each strength is drawn from a range that goes down to barely visible, so that the
validation AUROC does not saturate and still ranks detectors. It is an estimate: real
defects may be easier or harder than these (it underestimated the real AUROC on noisy MNIST).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from inspector.models.glimpse import GlimpseFields, object_box

KINDS = ("paste", "scratch", "blob", "band", "missing", "shift")
CHANGED = 1e-3  # the least change of a pixel (in [0, 1]) that counts as part of a defect (masks)


def boxes(frames: np.ndarray, polarity: float = 1.0) -> np.ndarray:
    """Each frame's object box (N, 4), as the glimpse family finds it: top, bottom, left, right
    (inclusive pixels; the whole frame where none is found); ``polarity``: the objects'
    (``GlimpseFields.glimpse_polarity``). In batches of 256 frames: a whole training set's fit."""
    fields = GlimpseFields()
    batches = (torch.from_numpy(frames[i : i + 256]) for i in range(0, len(frames), 256))
    found = [object_box(x, fields.glimpse_blur, fields.glimpse_threshold, polarity) for x in batches]
    return torch.cat(found).round().long().numpy()


def _soft_ellipse(shape: tuple[int, int], centre: np.ndarray, radii: np.ndarray, angle: float) -> np.ndarray:
    """A mask in [0, 1] of an ellipse whose edge falls off over about a pixel."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - centre[0]) * c + (yy - centre[1]) * s) / radii[0]
    v = (-(xx - centre[0]) * s + (yy - centre[1]) * c) / radii[1]
    r = np.sqrt(u**2 + v**2)
    return np.clip((1 - r) * min(radii) + 0.5, 0, 1).astype(np.float32)


def corrupt(
    frame: np.ndarray,
    box: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    donor: np.ndarray,
    donor_box: np.ndarray,
) -> np.ndarray:
    """One anomaly of ``kind`` made from a normal frame (C, H, W) in [0, 1], on its object ``box``;
    ``paste`` takes its square from ``donor`` (another normal frame, with its box)."""
    top, bottom, left, right = box
    height, width = frame.shape[-2:]
    side = max(bottom - top, right - left) + 1

    def point(b: np.ndarray) -> np.ndarray:  # (x, y) inside a box
        return np.array([rng.uniform(b[2], b[3] + 1), rng.uniform(b[0], b[1] + 1)])

    def signed(low: float, high: float) -> float:
        return float(rng.choice([-1, 1]) * rng.uniform(low, high))

    out = frame.copy()
    if kind in ("paste", "missing"):
        a = int(np.clip(round(side * rng.uniform(0.1, 0.3)), 2, min(height, width)))
        x, y = np.clip(point(box) - a / 2, 0, [width - a, height - a]).astype(int)
        if kind == "paste":
            sx, sy = np.clip(point(donor_box) - a / 2, 0, [width - a, height - a]).astype(int)
            out[:, y : y + a, x : x + a] = donor[:, sy : sy + a, sx : sx + a]
        else:
            out[:, y : y + a, x : x + a] = np.median(frame, axis=(1, 2))[:, None, None]
        return out
    if kind == "scratch":
        start = point(box)
        angle = rng.uniform(0, np.pi)
        end = start + side * rng.uniform(0.2, 0.6) * np.array([np.cos(angle), np.sin(angle)])
        thickness = max(1, round(side * rng.uniform(0.005, 0.03)))
        mask = cv2.line(
            np.zeros((height, width), np.float32),
            tuple(np.round(start).astype(int)),
            tuple(np.round(end).astype(int)),
            1.0,
            thickness,
        )
        level = np.quantile(frame, 0.01 if rng.random() < 0.5 else 0.99, axis=(1, 2))[:, None, None]
        alpha = rng.uniform(0.3, 1.0) * mask
        return (1 - alpha) * out + alpha * level
    if kind == "blob":
        mask = _soft_ellipse(
            (height, width), point(box), side * rng.uniform(0.03, 0.12, 2), rng.uniform(0, np.pi)
        )
        return np.clip(out + signed(0.08, 0.35) * mask, 0, 1)
    if kind == "band":
        horizontal = rng.random() < 0.5
        along = np.arange(height if horizontal else width, dtype=np.float32)
        centre = point(box)[1 if horizontal else 0]
        half = max(0.5, side * rng.uniform(0.01, 0.05))
        profile = np.clip(half + 0.5 - np.abs(along - centre), 0, 1)
        span = np.zeros(width if horizontal else height, np.float32)
        lo, hi = (left, right) if horizontal else (top, bottom)
        span[lo : hi + 1] = 1
        mask = profile[:, None] * span[None] if horizontal else span[:, None] * profile[None]
        return np.clip(out + signed(0.08, 0.3) * mask, 0, 1)
    if kind == "shift":
        mask = _soft_ellipse(
            (height, width), point(box), side * rng.uniform(0.08, 0.2, 2), rng.uniform(0, np.pi)
        )
        mask = mask * (frame.max(axis=0) > 0)  # holes (0) stay holes
        return np.clip(out + signed(0.04, 0.15) * mask, 0, 1)
    raise ValueError(f"unknown anomaly kind {kind!r}; choose from {KINDS}")


def anomalies(
    normals: np.ndarray, donors: np.ndarray, seed: int = 0, polarity: float = 1.0
) -> tuple[np.ndarray, list[str]]:
    """One anomaly of every kind from each normal frame (N, C, H, W): (N·6 frames, their kinds),
    kind by kind, each kind's in the order of the normal frames they are made from.
    ``donors`` (other normal frames) give the pasted squares; ``polarity``: the objects' (``boxes``)."""
    rng = np.random.default_rng(seed)
    own, theirs = boxes(normals, polarity), boxes(donors, polarity)
    frames, kinds = [], []
    for kind in KINDS:
        for i, frame in enumerate(normals):
            d = int(rng.integers(len(donors)))
            frames.append(corrupt(frame, own[i], kind, rng, donors[d], theirs[d]))
            kinds.append(kind)
    return np.stack(frames).astype(np.float32), kinds


def masks(normals: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Where each of ``anomalies(normals, ...)`` differs from the normal frame it was made from
    (N·6, H, W): its defect's pixels, known without a label."""
    n = len(normals)  # one kind at a time: no copy of every frame's normal one
    return np.concatenate(
        [np.abs(synthetic[i : i + n] - normals).max(axis=1) > CHANGED for i in range(0, len(synthetic), n)]
    )
