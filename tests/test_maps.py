"""Maps of a batch are the maps of its frames, and the fast PNG decodes to the same pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.detector import Detection
from inspector.maps import encode_png, heat_overlay, render_batch, render_maps


@pytest.mark.parametrize("channels", [1, 3])
def test_a_batch_renders_as_its_frames_one_by_one(channels: int) -> None:
    rng = np.random.default_rng(0)
    frames = rng.random((5, channels, 12, 12), dtype=np.float32)
    detections = [
        Detection(
            score=0.1,
            threshold=0.2,
            reconstruction=rng.random((channels, 12, 12), dtype=np.float32),
            error=rng.random((12, 12), dtype=np.float32) * 3 * (i != 2),  # one all-zero map
            attention=rng.random((12, 12), dtype=np.float32),
        )
        for i in range(5)
    ]
    batch = render_batch(frames, detections)
    for frame, detection, pictures in zip(frames, detections, batch, strict=True):
        single = render_maps(frame, detection)
        assert single.keys() == pictures.keys() == {"input", "reconstruction", "error", "attention"}
        for kind, image in pictures.items():
            np.testing.assert_array_equal(image, single[kind])
    # The overlay of one frame is the per-frame OpenCV recipe.
    scaled = detections[0].error / detections[0].error.max()
    coloured = cv2.applyColorMap((scaled * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
    if channels == 1:
        base = cv2.cvtColor((frames[0, 0] * 255 + 0.5).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    else:
        base = cv2.cvtColor((frames[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    expected = cv2.addWeighted(coloured, 0.5, base, 0.5, 0)
    np.testing.assert_array_equal(heat_overlay(detections[0].error[None], frames[:1])[0], expected)


def test_fast_png_round_trips() -> None:
    image = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for fast in (False, True):
        back = cv2.imdecode(np.frombuffer(encode_png(image, fast=fast), np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(back, image)
