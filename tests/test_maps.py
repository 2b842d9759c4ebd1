"""Stored planes: a batch's are its frames', pictures follow the OpenCV recipe, PNG round-trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.detector import Detection
from inspector.maps import decode_png, encode_png, map_planes, picture, render_maps


def detections_of(rng: np.random.Generator, channels: int, n: int) -> list[Detection]:
    return [
        Detection(
            score=0.1,
            threshold=0.2,
            reconstruction=rng.random((channels, 12, 12), dtype=np.float32),
            error=rng.random((12, 12), dtype=np.float32) * 3 * (i != 2),  # one all-zero map
            attention=rng.random((12, 12), dtype=np.float32),
            anomaly_map=rng.random((12, 12), dtype=np.float32),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("channels", [1, 3])
def test_a_batch_has_the_planes_of_its_frames_and_pictures_follow_the_recipe(channels: int) -> None:
    rng = np.random.default_rng(0)
    frames = rng.random((5, channels, 12, 12), dtype=np.float32)
    detections = detections_of(rng, channels, 5)
    batch = map_planes(frames, detections)
    for frame, detection, planes in zip(frames, detections, batch, strict=True):
        single = map_planes(frame[None], [detection])[0]
        assert single.keys() == planes.keys() == {"input", "reconstruction", "error", "attention"}
        for kind, plane in planes.items():
            np.testing.assert_array_equal(plane, single[kind])
            assert plane.dtype == np.uint8
    assert batch[0]["error"].max() == 255 and batch[2]["error"].max() == 0  # scaled to each frame's peak
    # The error picture of one frame is the per-frame OpenCV recipe on the float maps.
    scaled = detections[0].error / detections[0].error.max()
    coloured = cv2.applyColorMap((scaled * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
    if channels == 1:
        base = cv2.cvtColor((frames[0, 0] * 255 + 0.5).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    else:
        base = cv2.cvtColor((frames[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    expected = cv2.addWeighted(coloured, 0.5, base, 0.5, 0)
    np.testing.assert_array_equal(picture("error", batch[0]), expected)
    np.testing.assert_array_equal(render_maps(frames[0], detections[0])["error"], expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_stored_planes_draw_the_same_pictures(channels: int) -> None:
    """What the dashboard draws from the stored PNGs is what `score --maps` draws from memory."""
    rng = np.random.default_rng(2)
    frame = rng.random((channels, 12, 12), dtype=np.float32)
    detection = detections_of(rng, channels, 1)[0]
    planes = map_planes(frame[None], [detection])[0]
    stored = {kind: decode_png(encode_png(plane, fast=True)) for kind, plane in planes.items()}
    for kind, image in render_maps(frame, detection).items():
        np.testing.assert_array_equal(picture(kind, stored), image)


def test_fast_png_round_trips() -> None:
    image = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for fast in (False, True):
        np.testing.assert_array_equal(decode_png(encode_png(image, fast=fast)), image)
    with pytest.raises(ValueError, match="not a PNG"):
        decode_png(b"not a png")
