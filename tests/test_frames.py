"""Frame loading: real depth and magnetic-tile frames from ../shared, and synthetic files."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector import frames
from inspector.config import ConfigError, FrameSpec
from inspector.frames import (
    FrameError,
    decode,
    detect_mode,
    find_frames,
    frame_from_bytes,
    load_frame,
    measured_raw_range,
    prepare,
    preprocess,
)

from .conftest import SHARED_DATA, encoded, npy_bytes, png_header

DEPTH = SHARED_DATA / "depth"
HAND = DEPTH / "hand-sr305"
PERSON = DEPTH / "realsense-person"
TILES = SHARED_DATA / "magnetic-tile"
SR305 = FrameSpec(mode="depth", image_size=64, depth_unit_mm=0.125, near_mm=0.0, far_mm=1500.0)
needs_depth = pytest.mark.skipif(not DEPTH.is_dir(), reason="needs ../shared/data/depth")
needs_tiles = pytest.mark.skipif(not TILES.is_dir(), reason="needs ../shared/data/magnetic-tile")


# --- real depth frames -------------------------------------------------------------------


@needs_depth
@pytest.mark.parametrize("path", sorted(HAND.glob("*/*.png"))[:4] + sorted(PERSON.glob("*.png"))[:2])
def test_real_depth_frames_load_to_unit_range(path: Path) -> None:
    unit = 0.125 if HAND in path.parents else 1.0
    frame = load_frame(path, FrameSpec(mode="depth", image_size=64, depth_unit_mm=unit))
    assert frame.shape == (1, 64, 64) and frame.dtype == np.float32
    assert 0.0 <= frame.min() and frame.max() <= 1.0
    assert frame.max() > 0.2  # the subject is in the working range, so it is visible


@needs_depth
def test_sr305_units_put_the_hand_within_reach() -> None:
    """0.125 mm per unit: the measured depths are a person at 0.4–1.2 m, not 3–9 m."""
    raw = decode((HAND / "gesture" / "110.png").read_bytes(), 10**8)
    assert raw.dtype == np.uint16 and raw.shape == (480, 640)
    mm = raw[raw > 0] * SR305.depth_unit_mm
    assert 300 < np.percentile(mm, 1) and np.percentile(mm, 99) < 1500


@needs_depth
@pytest.mark.parametrize(
    ("path", "unit"), [(HAND / "gesture" / "110.png", 0.125), (PERSON / "A_hat1_depth_frame0.png", 1.0)]
)
def test_depth_holes_are_far_and_nearer_is_brighter(path: Path, unit: float) -> None:
    raw = decode(path.read_bytes(), 10**8)[:400, :400]  # square: no resizing, pixel for pixel
    spec = FrameSpec(mode="depth", image_size=400, depth_unit_mm=unit, near_mm=0.0, far_mm=1500.0)
    frame = preprocess(raw, spec)[0]
    holes = raw == 0
    assert holes.any() and (frame[holes] == 0).all()
    assert (frame[~holes] > 0).all()
    expected = (1500.0 - raw[~holes] * unit) / 1500.0
    np.testing.assert_allclose(frame[~holes], expected, atol=1e-5)


@needs_depth
def test_fill_holes_fills_dropouts_but_not_the_background() -> None:
    path = PERSON / "A_hat1_depth_frame0.png"
    spec = FrameSpec(mode="depth", image_size=128, far_mm=1500.0)
    plain = load_frame(path, spec)[0]
    filled = load_frame(path, FrameSpec(**{**spec.__dict__, "fill_holes": True}))[0]
    assert filled[0, 0] == 0 and filled[:, :5].max() == 0  # background at the border stays far
    inside = (plain == 0) & (filled > 0)
    assert inside.sum() > 5  # dropouts on the person are filled...
    near_values = filled[plain > 0]
    assert near_values.min() <= filled[inside].min() and filled[inside].max() <= near_values.max()


# --- synthetic depth ---------------------------------------------------------------------


def test_depth_clips_to_the_working_range() -> None:
    raw = np.array([[0, 100, 400], [1000, 2000, 65535]], np.uint16)
    spec = FrameSpec(
        mode="depth", image_size=2, depth_unit_mm=1.0, near_mm=200.0, far_mm=1200.0, roi=(0, 0, 2, 2)
    )
    frame = preprocess(raw, spec)[0]
    np.testing.assert_allclose(frame, [[0.0, 1.0], [0.2, 0.0]], atol=1e-6)  # hole, too near, 1 m, too far


def test_depth_float_nan_is_a_hole_and_8_bit_is_refused() -> None:
    spec = FrameSpec(mode="depth", image_size=2, far_mm=1000.0)
    frame = preprocess(np.array([[np.nan, 500.0], [500.0, 500.0]], np.float32), spec)[0]
    assert frame[0, 0] == 0 and frame[1, 1] == pytest.approx(0.5)
    with pytest.raises(FrameError, match="8-bit"):
        preprocess(np.full((4, 4), 7, np.uint8), spec)
    with pytest.raises(FrameError, match="one channel"):
        preprocess(np.zeros((4, 4, 3), np.uint16), spec)


def test_depth_npy_and_tiff_in_sensor_units(tmp_path: Path) -> None:
    depth = np.full((8, 8), 4000, np.uint16)  # 500 mm at 0.125 mm per unit
    depth[2, 2] = 0
    spec = FrameSpec(mode="depth", image_size=8, depth_unit_mm=0.125, far_mm=1000.0)
    (tmp_path / "d.npy").write_bytes(npy_bytes(depth))
    cv2.imwrite(str(tmp_path / "d.tiff"), depth)
    for name in ("d.npy", "d.tiff"):
        frame = load_frame(tmp_path / name, spec)[0]
        assert frame[2, 2] == 0 and frame[0, 0] == pytest.approx(0.5)


# --- grey and colour ---------------------------------------------------------------------


def test_16_bit_png_grey_scales_by_full_range(tmp_path: Path) -> None:
    img = np.full((10, 10), 65535, np.uint16)
    img[:, :5] = 0
    (tmp_path / "a.png").write_bytes(encoded(img))
    frame = load_frame(tmp_path / "a.png", FrameSpec(mode="grey", image_size=10))
    assert frame.shape == (1, 10, 10)
    assert frame[0, 0, 0] == 0 and frame[0, 0, 9] == 1


def test_16_bit_levels_stretch_a_narrow_range_to_black_and_white(tmp_path: Path) -> None:
    """A 12-bit camera's 16-bit files (levels 0-4095) are read between the training files' own
    levels, set once by ``measured_raw_range`` and kept in the spec: the same file reads the same way
    after, whichever frame it is; levels beyond the range clip. An 8-bit file is read by the same
    range at its 16-bit equivalent; depth frames are left as they were."""
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(1000, 3001, (40, 50)).astype(np.uint16)
        img[0, 0] = 4095  # one hot pixel does not set the scale
        (tmp_path / f"{i}.png").write_bytes(encoded(img))
    spec = FrameSpec(mode="grey", image_size=8)
    raw_range, why = measured_raw_range(find_frames(tmp_path), spec)
    assert raw_range is not None
    assert raw_range[0] == pytest.approx(1000, abs=10) and raw_range[1] == pytest.approx(3000, abs=10)
    assert why.startswith("4 sampled files hold 16-bit levels")
    stretched = dataclasses.replace(spec, raw_range=(1000.0, 3000.0))
    np.testing.assert_allclose(preprocess(np.full((8, 8), 2000, np.uint16), stretched), 0.5)
    assert preprocess(np.full((8, 8), 4095, np.uint16), stretched).max() == 1.0
    assert preprocess(np.full((8, 8), 6, np.uint8), stretched).max() == pytest.approx((6 * 257 - 1000) / 2000)
    assert measured_raw_range(find_frames(tmp_path), dataclasses.replace(spec, mode="depth")) == (None, "")


def test_8_bit_levels_stretch_a_dim_range_and_a_wide_one_reads_at_full_scale(tmp_path: Path) -> None:
    """An 8-bit camera's dim frames (levels 20-60) are read between their own levels too, kept on
    the 16-bit scale; files whose levels span half the scale or more, or one level, keep the full
    scale."""
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(20, 61, (40, 50)).astype(np.uint8))
    spec = FrameSpec(mode="grey", image_size=8)
    raw_range, why = measured_raw_range(find_frames(tmp_path), spec)
    assert raw_range == pytest.approx((20 * 257, 60 * 257))
    assert why.startswith("3 sampled files hold 8-bit levels 20-60 (0.1th-99.9th percentile)")
    stretched = dataclasses.replace(spec, raw_range=raw_range)
    np.testing.assert_allclose(preprocess(np.full((8, 8), 40, np.uint8), stretched), 0.5, atol=1e-6)
    (tmp_path / "wide").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "wide" / f"{i}.png"), rng.integers(10, 250, (40, 50)).astype(np.uint8))
    raw_range, why = measured_raw_range(find_frames(tmp_path / "wide"), spec)
    assert (
        raw_range is None
        and why == "3 sampled files hold 8-bit levels 10-249: read at full scale (at least 50% of it)"
    )
    (tmp_path / "flat").mkdir()
    cv2.imwrite(str(tmp_path / "flat" / "a.png"), np.full((8, 8), 7, np.uint8))
    raw_range, why = measured_raw_range(find_frames(tmp_path / "flat"), spec)
    assert raw_range is None and why == "1 sampled files hold one 8-bit level (7): read at full scale"


def test_the_levels_sample_reads_the_region_of_interest_and_skips_files_it_lies_outside(
    tmp_path: Path,
) -> None:
    """Only the region's levels set the range; a file smaller than the region is left to the
    loading (which refuses it), not read in part."""
    img = np.full((40, 50), 3000, np.uint16)
    img[:20] = 1000  # the region below takes the bottom rows only
    (tmp_path / "a.png").write_bytes(encoded(img))
    (tmp_path / "small.png").write_bytes(encoded(np.full((10, 10), 60000, np.uint16)))
    spec = FrameSpec(mode="grey", image_size=8, roi=(0, 20, 50, 20))
    raw_range, why = measured_raw_range(find_frames(tmp_path), spec)
    assert raw_range is None and why.startswith("1 sampled files hold one 16-bit level (3000)")


def test_colour_is_rgb_and_grey_from_colour(tmp_path: Path) -> None:
    red_bgr = np.zeros((16, 24, 3), np.uint8)
    red_bgr[..., 2] = 255
    cv2.imwrite(str(tmp_path / "red.jpg"), red_bgr)
    colour = load_frame(tmp_path / "red.jpg", FrameSpec(mode="colour", image_size=8))
    assert colour.shape == (3, 8, 8)
    assert colour[0].mean() > 0.9 and colour[1:].mean() < 0.1
    grey = load_frame(tmp_path / "red.jpg", FrameSpec(mode="grey", image_size=8))
    assert grey.shape == (1, 8, 8) and grey.mean() == pytest.approx(0.299, abs=0.02)


def test_grey_frame_in_colour_mode_repeats_it() -> None:
    frame = preprocess(np.full((5, 7), 51, np.uint8), FrameSpec(mode="colour", image_size=4))
    assert frame.shape == (3, 4, 4)
    np.testing.assert_allclose(frame, 0.2, atol=1e-6)


def test_auto_mode_tells_colour_files_from_grey_ones(tmp_path: Path) -> None:
    """Training's default mode (auto): colour where most files hold colour, grey where they hold
    none, a grey picture saved as RGB or as a colour JPEG included; depth is never guessed, but a
    folder of 16-bit grey files is told how to ask for it. Unreadable files are left to the loading."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (3, 24, 32), dtype=np.uint8)
    folders = {name: tmp_path / name for name in ("colour", "rgb_grey", "jpeg_grey", "deep")}
    for folder in folders.values():
        folder.mkdir()
    for i, picture in enumerate(grey):
        tinted = np.stack([picture // 2, picture, picture], axis=2)  # BGR: a warm cast
        cv2.imwrite(str(folders["colour"] / f"{i}.png"), tinted)
        cv2.imwrite(str(folders["rgb_grey"] / f"{i}.png"), np.stack([picture] * 3, axis=2))
        cv2.imwrite(str(folders["jpeg_grey"] / f"{i}.jpg"), np.stack([picture] * 3, axis=2))
        cv2.imwrite(str(folders["deep"] / f"{i}.png"), picture.astype(np.uint16) * 200)
    (folders["colour"] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    spec = FrameSpec(mode="auto")
    mode, why = detect_mode(find_frames(folders["colour"]), spec)
    assert mode == "colour" and why.startswith("3 of 3 sampled files hold colour")
    for name in ("rgb_grey", "jpeg_grey"):
        assert detect_mode(find_frames(folders[name]), spec) == (
            "grey",
            "3 of 3 sampled files hold no colour: grey frames",
        )
    mode, why = detect_mode(find_frames(folders["deep"]), spec)
    assert mode == "grey" and "3 hold 16-bit levels" in why and "--mode depth" in why


def test_float_frames_must_be_in_unit_range() -> None:
    spec = FrameSpec(mode="grey", image_size=4)
    assert preprocess(np.full((4, 4), 0.25), spec).max() == pytest.approx(0.25)
    for bad in (np.full((4, 4), 3.0), np.full((4, 4), np.nan)):
        with pytest.raises(FrameError, match=r"\[0, 1\]"):
            preprocess(bad, spec)
    with pytest.raises(FrameError, match="pixel type"):
        preprocess(np.zeros((4, 4), np.int64), spec)


def test_roi_crops_before_resizing() -> None:
    img = np.zeros((20, 30), np.uint8)
    img[5:15, 10:20] = 255
    frame = preprocess(img, FrameSpec(image_size=10, roi=(10, 5, 10, 10)))
    assert frame.min() == 1.0
    with pytest.raises(FrameError, match="outside"):
        preprocess(img, FrameSpec(image_size=10, roi=(25, 0, 10, 10)))
    with pytest.raises(ConfigError):
        preprocess(img, FrameSpec(image_size=10, roi=(0, 0, 0, 10)))


def test_width_keeps_an_elongated_frame_s_aspect() -> None:
    """frames.width sets the columns apart from the rows; 0 keeps frames square."""
    img = np.zeros((50, 150), np.uint8)
    img[:, 100:] = 255
    frame = preprocess(img, FrameSpec(image_size=10, width=30))
    assert frame.shape == (1, 10, 30) and frame[0, :, 21:].min() > 0.999 and frame[0, :, :19].max() < 0.001
    assert preprocess(img, FrameSpec(image_size=10)).shape == (1, 10, 10)
    depth = np.full((48, 64), 4000, np.uint16)
    assert preprocess(depth, FrameSpec(mode="depth", image_size=12, width=16, fill_holes=True)).shape == (
        1,
        12,
        16,
    )
    with pytest.raises(ConfigError, match="width"):
        preprocess(img, FrameSpec(image_size=10, width=-1))


def test_flatten_removes_the_lighting_and_keeps_local_contrast() -> None:
    """A surface lit from one side with a dark spot: flat-fielded, the surface is even (0.5)
    and the spot keeps its contrast, at either end of the ramp."""
    ramp = np.tile(np.linspace(0.2, 0.9, 64, dtype=np.float32), (64, 1))
    img = ramp.copy()
    img[10:13, 5:8] *= 0.5
    img[50:53, 55:58] *= 0.5
    frame = preprocess(img, FrameSpec(image_size=64, flatten=4.0))[0]
    assert frame.shape == (64, 64) and frame.dtype == np.float32
    surface = np.zeros((64, 64), bool)
    surface[:, 8:-8] = True  # two σ from the ends, where the blur sees the ramp on both sides
    surface[6:17, 1:12] = surface[46:57, 51:62] = False
    assert np.abs(frame[surface] - 0.5).max() < 0.05
    assert frame[11, 6] < 0.35 and frame[51, 56] < 0.35


@pytest.mark.parametrize(
    "spec", [FrameSpec(flatten=-1.0), FrameSpec(mode="depth", flatten=4.0)], ids=["negative", "depth"]
)
def test_flatten_is_refused_where_it_means_nothing(spec: FrameSpec) -> None:
    with pytest.raises(ConfigError, match="flatten"):
        preprocess(np.zeros((8, 8), np.uint16), spec)


def test_resize_is_bilinear_with_antialiasing() -> None:
    """The benchmark protocol's resize: PIL's bilinear filter, which antialiases when shrinking."""
    image = pytest.importorskip("PIL.Image")
    img = np.random.default_rng(0).integers(0, 256, (61, 47), dtype=np.uint8)
    ours = preprocess(img, FrameSpec(image_size=16))[0] * 255
    theirs = np.asarray(image.fromarray(img).resize((16, 16), image.BILINEAR), np.float32)
    assert np.abs(ours - theirs).max() <= 1.0


# --- bad files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"GIF89a" + bytes(100), "unknown format"),
        (b"\x89PNG\r\n\x1a\n" + bytes(6), "no size"),
        (png_header(10, 10) + b"garbage", "corrupt or truncated data"),
        (png_header(0, 10), "zero-size"),
        (png_header(100_000, 100_000), "exceeds the limit"),
        (npy_bytes(np.zeros((0, 4), np.uint8)), "zero-size"),
        (npy_bytes(np.zeros(16, np.uint8)), "shape"),
        (npy_bytes(np.array([[None]], dtype=object)), "not Python objects"),
        (npy_bytes(np.zeros((4, 4, 2), np.uint8)), "channel count"),
        (npy_bytes(np.zeros((40, 40), np.uint8))[:-100], "truncated"),
    ],
)
def test_bad_bytes_raise_frame_error(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        frame_from_bytes(data, FrameSpec(image_size=8, max_pixels=10**8))


def test_a_frames_level_is_its_mean_before_flat_fielding() -> None:
    """Flat-fielding divides a lamp's change away from the model input; the level keeps it (the
    drift monitor watches it beside the scores)."""
    raw = np.random.default_rng(0).integers(60, 160, (64, 64)).astype(np.uint8)
    spec = FrameSpec(image_size=32, flatten=4.0)
    plain = prepare(raw, spec)
    assert np.array_equal(plain.pixels, preprocess(raw, spec))
    assert plain.level == pytest.approx(raw.mean() / 255, abs=0.005)
    assert prepare(raw + 40, spec).level - plain.level == pytest.approx(40 / 255, abs=0.005)
    dimmer = prepare((raw * 0.8).astype(np.uint8), spec)
    assert np.abs(dimmer.pixels - plain.pixels).mean() < 0.01  # the model barely sees it...
    assert dimmer.level / plain.level == pytest.approx(0.8, abs=0.01)  # ...the level does
    depth = prepare(np.full((8, 8), 500, np.uint16), FrameSpec(mode="depth", image_size=4, far_mm=1000))
    assert depth.level == pytest.approx(float(depth.pixels.mean()))


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    data = encoded(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameError, match="not a readable image: corrupt or truncated"):
        load_frame(tmp_path / "cut.png", FrameSpec(image_size=8))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff", ".bmp", ".npy"])
def test_pixel_limit_is_checked_from_the_header(tmp_path: Path, suffix: str) -> None:
    img = np.zeros((40, 50), np.uint8)
    path = tmp_path / f"big{suffix}"
    if suffix == ".npy":
        path.write_bytes(npy_bytes(img))
    else:
        cv2.imwrite(str(path), img)
    assert load_frame(path, FrameSpec(image_size=8, max_pixels=2000)).shape == (1, 8, 8)
    with pytest.raises(FrameError, match="50x40 pixels exceeds the limit of 1999"):
        load_frame(path, FrameSpec(image_size=8, max_pixels=1999))


def test_the_issues_png_bomb_is_refused_by_its_decoded_bytes() -> None:
    """7000x7000 16-bit RGBA: 49 M pixels pass the pixel limit, but decoded they take 392 MB
    (2.27 GB while preprocessed): refused from the header, by the default byte limit."""
    with pytest.raises(FrameError, match="392000000 bytes decoded: over the limit of 268435456"):
        frame_from_bytes(png_header(7000, 7000, 16, 6) + bytes(64), FrameSpec(image_size=8))


@pytest.mark.parametrize(
    ("suffix", "image", "pixel_bytes"),
    [
        (".png", np.zeros((40, 50, 4), np.uint16), 8),
        (".png", np.zeros((40, 50, 3), np.uint8), 3),
        (".jpg", np.zeros((40, 50, 3), np.uint8), 3),
        (".tiff", np.zeros((40, 50, 3), np.float32), 12),
        (".tiff", np.zeros((40, 50), np.uint16), 2),
        (".bmp", np.zeros((40, 50), np.uint8), 3),
        (".npy", np.zeros((40, 50, 4), np.float64), 32),
    ],
)
def test_decoded_bytes_are_bounded_from_the_header(suffix: str, image: np.ndarray, pixel_bytes: int) -> None:
    """width x height x channels x bytes per sample, read before decoding: at the limit the frame
    is read, one byte below it is refused."""
    data = npy_bytes(image) if suffix == ".npy" else encoded(image, suffix)
    spec = FrameSpec(mode="colour", image_size=8)
    size = 40 * 50 * pixel_bytes
    assert decode(data, 10**6, max_bytes=size).nbytes <= size
    assert frame_from_bytes(data, spec, max_bytes=size).pixels.shape == (3, 8, 8)
    with pytest.raises(FrameError, match=f"would take {size} bytes decoded: over the limit of {size - 1}"):
        decode(data, 10**6, max_bytes=size - 1)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int8])
def test_poison_tiffs_decode_or_raise_frame_error(tmp_path: Path, dtype: type) -> None:
    """3-channel TIFFs of sample types cv2.cvtColor refuses (issue 17, item 1): never a cv2.error."""
    path = tmp_path / "p.tif"
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 0.5).astype(dtype))
    spec = FrameSpec(mode="colour", image_size=8)
    if dtype == np.float64:  # floats in [0, 1]: a frame
        assert np.allclose(load_frame(path, spec), 0.5)
    else:
        with pytest.raises(FrameError, match="unsupported pixel type"):
            load_frame(path, spec)


def test_a_library_error_while_preprocessing_becomes_a_frame_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*_: object) -> None:
        raise cv2.error("OpenCV(5.0.0) resize.cpp:1: error: (-215:Assertion failed) in function 'x'")

    monkeypatch.setattr(frames, "_resize", fails)
    with pytest.raises(FrameError, match="cannot preprocess the image: OpenCV"):
        frame_from_bytes(encoded(np.zeros((20, 20), np.uint8)), FrameSpec(image_size=8))


def test_opencv_keeps_its_own_log_lines_about_bad_files_to_itself(tmp_path: Path) -> None:
    """The reason is in the FrameError; OpenCV's own "[ WARN] ... PNG input buffer is incomplete"
    lines on stderr, one per hostile file, are not (issue 17, item 16)."""
    cut = tmp_path / "cut.png"
    data = encoded(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    cut.write_bytes(data[: len(data) // 2])
    code = (
        "import sys\n"
        "from inspector.config import FrameSpec\n"
        "from inspector.frames import FrameError, load_frame\n"
        "try: load_frame(sys.argv[1], FrameSpec())\n"
        "except FrameError as e: print(e)"
    )
    run = subprocess.run([sys.executable, "-c", code, str(cut)], capture_output=True, text=True, check=True)
    assert "corrupt or truncated" in run.stdout
    assert run.stderr == ""


def test_npy_bomb_is_refused_before_reading_its_data() -> None:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": "|u1", "fortran_order": False, "shape": (99999, 99999)}
    )
    with pytest.raises(FrameError, match="exceeds"):
        frame_from_bytes(stream.getvalue() + bytes(16), FrameSpec(image_size=8, max_pixels=10**8))


def test_unreadable_path_raises_frame_error(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="cannot read"):
        load_frame(tmp_path / "missing.png", FrameSpec())
    with pytest.raises(FrameError, match="cannot read"):
        load_frame(tmp_path, FrameSpec())


def test_find_frames_skips_hidden_and_other_files(tmp_path: Path) -> None:
    for name in ("b.png", "a.NPY", "notes.txt", ".hidden.png", ".tmp/c.png", "sub/d.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in find_frames(tmp_path)] == [
        "a.NPY",
        "b.png",
        "sub/d.tif",
    ]


# --- magnetic tile -------------------------------------------------------------------------


@needs_tiles
@pytest.mark.parametrize("defect", ["Free", "Blowhole", "Fray"])
def test_magnetic_tile_images_load_as_grey(defect: str) -> None:
    path = sorted((TILES / f"MT_{defect}" / "Imgs").glob("*.jpg"))[0]
    raw = decode(path.read_bytes(), 10**8)
    assert raw.ndim == 2 and raw.dtype == np.uint8
    frame = load_frame(path, FrameSpec(mode="grey", image_size=128))
    assert frame.shape == (1, 128, 128)
    assert 0.05 < frame.mean() < 0.6
    mask = load_frame(path.with_suffix(".png"), FrameSpec(mode="grey", image_size=128))
    assert mask.shape == (1, 128, 128) and ((mask.max() > 0.5) == (defect != "Free"))
