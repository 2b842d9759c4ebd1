"""Stored planes: a batch's are its frames', pictures follow the OpenCV recipe, PNG round-trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.maps import decode_png, encode_png, map_planes, picture, render_maps, to_uint8


def maps_of(rng: np.random.Generator, channels: int, n: int) -> dict[str, np.ndarray]:
    """A batch's maps by kind, as the detector hands them over (inspector.detector.map_arrays)."""
    error = rng.random((n, 12, 12), dtype=np.float32) * 3
    error[2:3] = 0  # one all-zero map, where there are three
    return {
        "input": rng.random((n, channels, 12, 12), dtype=np.float32),
        "reconstruction": rng.random((n, channels, 12, 12), dtype=np.float32),
        "error": error,
        "attention": rng.random((n, 12, 12), dtype=np.float32),
        "anomaly": rng.random((n, 12, 12), dtype=np.float32),
    }


def one(maps: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {kind: array[i : i + 1] for kind, array in maps.items()}


@pytest.mark.parametrize("channels", [1, 3])
def test_a_batch_has_the_planes_of_its_frames_and_pictures_follow_the_recipe(channels: int) -> None:
    rng = np.random.default_rng(0)
    maps = maps_of(rng, channels, 5)
    batch = map_planes(maps)
    for i, planes in enumerate(batch):
        single = map_planes(one(maps, i))[0]
        assert single.keys() == planes.keys() == {"input", "reconstruction", "error", "attention", "anomaly"}
        for kind, plane in planes.items():
            np.testing.assert_array_equal(plane, single[kind])
            assert plane.dtype == np.uint8
    assert batch[0]["error"].max() == 255 and batch[2]["error"].max() == 0  # scaled to each frame's peak
    # The error picture of one frame is the per-frame OpenCV recipe on the float maps.
    scaled = maps["error"][0] / maps["error"][0].max()
    coloured = cv2.applyColorMap((scaled * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_JET)
    frame = maps["input"][0]
    if channels == 1:
        base = cv2.cvtColor((frame[0] * 255 + 0.5).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    else:
        base = cv2.cvtColor((frame.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    expected = cv2.addWeighted(coloured, 0.5, base, 0.5, 0)
    np.testing.assert_array_equal(picture("error", batch[0]), expected)
    np.testing.assert_array_equal(render_maps(one(maps, 0))["error"], expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_stored_planes_draw_the_same_pictures(channels: int) -> None:
    """What the dashboard draws from the stored PNGs is what `score --maps` draws from memory."""
    maps = maps_of(np.random.default_rng(2), channels, 1)
    planes = map_planes(maps)[0]
    stored = {kind: decode_png(encode_png(plane, fast=True)) for kind, plane in planes.items()}
    for kind, image in render_maps(maps).items():
        np.testing.assert_array_equal(picture(kind, stored), image)


def test_images_become_uint8_for_opencv_alone_or_in_a_batch() -> None:
    rgb = np.zeros((3, 2, 2), np.float32)
    rgb[0] = 1.0  # red
    assert to_uint8(rgb)[0, 0].tolist() == [0, 0, 255]  # BGR
    assert to_uint8(rgb[None]).shape == (1, 2, 2, 3) and to_uint8(rgb).flags.c_contiguous
    grey = np.array([[[0.0, 0.5], [1.0, 2.0]]], np.float32)
    assert to_uint8(grey).tolist() == [[0, 128], [255, 255]]


def test_fast_png_round_trips() -> None:
    image = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for fast in (False, True):
        np.testing.assert_array_equal(decode_png(encode_png(image, fast=fast)), image)
    with pytest.raises(ValueError, match="not a PNG"):
        decode_png(b"not a png")
