"""Reading a frame from disk and turning it into a model input, in one place.

Training, the watcher, the workers, the dashboard and the benchmarks all call
:func:`load_frame` (or :func:`frame_from_bytes`), so a frame means the same thing
everywhere. A model input is a float32 array (C, H, W) in [0, 1].

Depth frames are in sensor units (``FrameSpec.depth_unit_mm`` millimetres each). Zero
means "no measurement" (a hole): holes, and everything beyond ``far_mm``, map to 0 (far),
and the working range maps linearly to near = 1, so a hole never looks "very near".

Files are untrusted (they arrive in a watched folder or by upload): the image size is
read from the file header and checked against ``max_pixels``, and the bytes its pixels
would take once decoded against ``max_bytes``, *before* anything is decoded, so a small
file that expands to gigabytes (a decompression bomb) is refused. Whatever a decoder raises
for a damaged file becomes a FrameError: one bad file is one frame's problem.
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from inspector.config import MAX_DECODED_BYTES, MODES, ConfigError, FrameSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy"}
DEPTH_DTYPES = (np.uint16, np.uint32, np.int16, np.int32, np.int64, np.float32, np.float64)
# The largest file worth reading for max_pixels pixels: 4 channels of float64, plus headers.
BYTES_PER_PIXEL_BOUND = 32
FLATTEN_FLOOR = 0.02  # added to the lighting estimate: black stays black instead of 0/0
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

# A damaged file's reason goes into its FrameError (and the quarantine note); OpenCV's own log
# lines (libtiff errors, "PNG input buffer is incomplete") would repeat it for every bad file.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class FrameError(ValueError):
    """A file that cannot become a frame; the message says why, for the quarantine."""


def is_frame_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


class Header(NamedTuple):
    """What a file's header promises: its size, and an upper bound of the bytes a pixel takes
    once OpenCV has decoded it (channels x bytes per sample)."""

    width: int
    height: int
    pixel_bytes: int


def _png_header(data: bytes) -> Header | None:
    if len(data) < 26 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    # Grey, RGB, palette, grey + alpha, RGBA: OpenCV expands palettes (and grey + alpha) to BGR(A).
    channels = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(colour, 4)
    return Header(width, height, channels * (2 if depth > 8 else 1))


def _jpeg_header(data: bytes) -> Header | None:
    """Walk the marker segments up to the first start-of-frame, which holds the size."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        if marker in JPEG_SOF:
            if i + 10 > len(data):
                return None
            precision, height, width, components = struct.unpack(">BHHB", data[i + 4 : i + 10])
            return Header(width, height, max(3, min(components, 4)) * (2 if precision > 8 else 1))
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _tiff_header(data: bytes) -> Header | None:
    """Size, samples per pixel and bits per sample from the first image file directory."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    tags: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k : offset + 14 + 12 * k]
        if len(entry) < 12:
            return None
        tag, kind, values = struct.unpack(order + "HHI", entry[:8])
        if tag in (256, 257, 258, 277) and kind in (3, 4):  # SHORT or LONG: the first value
            size = 2 if kind == 3 else 4
            where = entry[8 : 8 + size]
            if values * size > 4:  # the values lie elsewhere: their offset is here
                (at,) = struct.unpack(order + "I", entry[8:12])
                where = data[at : at + size]
            if len(where) == size:
                (tags[tag],) = struct.unpack(order + ("H" if kind == 3 else "I"), where)
    if 256 not in tags or 257 not in tags:
        return None
    samples, bits = tags.get(277, 1), tags.get(258, 1)
    sample_bytes = samples * -(-bits // 8)
    # Other depths (1, 4, 12 bits ...) are read through libtiff's RGBA route: 4 bytes a pixel.
    return Header(tags[256], tags[257], sample_bytes if bits in (8, 16, 32, 64) else max(sample_bytes, 4))


def _bmp_header(data: bytes) -> Header | None:
    if len(data) < 30:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 core header: 16-bit sizes
        width, height, _planes, bits = struct.unpack("<HHHH", data[18:26])
    else:
        width, height, _planes, bits = struct.unpack("<iiHH", data[18:30])
    return Header(abs(width), abs(height), 4 if bits == 32 else 3)


SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", _png_header),
    (b"\xff\xd8\xff", _jpeg_header),
    (b"II*\x00", _tiff_header),
    (b"MM\x00*", _tiff_header),
    (b"BM", _bmp_header),
)


def _check_size(width: int, height: int, pixel_bytes: int, max_pixels: int, max_bytes: int) -> None:
    if width == 0 or height == 0:
        raise FrameError(f"zero-size image ({width}x{height})")
    if width * height > max_pixels:
        raise FrameError(f"image of {width}x{height} pixels exceeds the limit of {max_pixels}")
    if width * height * pixel_bytes > max_bytes:
        raise FrameError(
            f"image of {width}x{height} pixels, {pixel_bytes} bytes each, would take "
            f"{width * height * pixel_bytes} bytes decoded: over the limit of {max_bytes}"
        )


def _decode_npy(data: bytes, max_pixels: int, max_bytes: int) -> np.ndarray:
    """A NumPy array, its shape checked from the header before the data is read."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _fortran, dtype = read_header(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise FrameError(f"not a readable .npy array: {exc}") from exc
    if dtype.hasobject:
        raise FrameError("a .npy frame must hold numbers, not Python objects")
    if len(shape) not in (2, 3):
        raise FrameError(f"a .npy frame must be (H, W) or (H, W, C), not of shape {shape}")
    channels = shape[2] if len(shape) == 3 else 1
    _check_size(shape[1], shape[0], channels * dtype.itemsize, max_pixels, max_bytes)
    stream.seek(0)
    try:
        return np.load(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise FrameError(f"truncated or corrupt .npy array: {exc}") from exc


def _rgb(raw: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) as RGB(A), for any sample type (cvtColor refuses some: int32, float64 ...)."""
    if raw.ndim == 3 and raw.shape[2] == 3:
        return raw[..., ::-1]
    if raw.ndim == 3 and raw.shape[2] == 4:
        return raw[..., [2, 1, 0, 3]]
    return raw


def decode(data: bytes, max_pixels: int, max_bytes: int = MAX_DECODED_BYTES) -> np.ndarray:
    """File bytes -> raw array (H, W) or (H, W, C), colour in RGB(A) order, in its own dtype.

    The format is told by the content, not the file name. Colour images come back as
    RGB(A) (OpenCV decodes BGR); .npy colour arrays are taken to be RGB already. The size,
    in pixels and in decoded bytes, is checked from the header before anything is decoded.
    """
    if not data:
        raise FrameError("not a readable image: empty file")
    if data.startswith(b"\x93NUMPY"):
        raw = _decode_npy(data, max_pixels, max_bytes)
    else:
        for signature, read_header in SIGNATURES:
            if data.startswith(signature):
                header = read_header(data)
                break
        else:
            raise FrameError("not a readable image: unknown format (expected PNG, JPEG, TIFF, BMP or .npy)")
        if header is None:
            raise FrameError("not a readable image: truncated or corrupt header (no size)")
        _check_size(*header, max_pixels, max_bytes)
        try:
            raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:
            raise FrameError(f"not a readable image: the decoder failed ({_first_line(exc)})") from exc
        if raw is None:
            raise FrameError("not a readable image: corrupt or truncated data")
        raw = _rgb(raw)
    if raw.ndim == 3 and raw.shape[2] not in (1, 3, 4):
        raise FrameError(f"unsupported channel count {raw.shape[2]} (expected 1, 3 or 4)")
    _check_size(
        raw.shape[1],
        raw.shape[0],
        raw.itemsize * (raw.shape[2] if raw.ndim == 3 else 1),
        max_pixels,
        max_bytes,
    )
    return raw


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def check_spec(spec: FrameSpec) -> None:
    """Refuse an unusable frame configuration: a settings error, not the frame's fault."""
    if spec.mode not in MODES:
        raise ConfigError(f"frames.mode must be one of {', '.join(MODES)}, not {spec.mode!r}")
    if spec.image_size < 1 or spec.width < 0:
        raise ConfigError(
            f"frames.image_size must be positive and frames.width positive or 0, not {spec.shape}"
        )
    if spec.mode == "depth":
        if spec.depth_unit_mm <= 0:
            raise ConfigError(f"frames.depth_unit_mm must be positive, not {spec.depth_unit_mm}")
        near, far = spec.depth_range
        if not 0 <= near < far:
            raise ConfigError(f"depth working range is empty (near {near:g} mm, far {far:g} mm)")
    if spec.flatten < 0 or (spec.flatten and spec.mode == "depth"):
        raise ConfigError(f"frames.flatten is a blur σ ≥ 0 for grey or colour frames, not {spec.flatten}")
    if spec.roi is not None and (len(spec.roi) != 4 or min(spec.roi[2:]) < 1 or min(spec.roi[:2]) < 0):
        raise ConfigError(f"frames.roi must be x, y, width, height with a positive size, not {spec.roi}")


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 -> (C, *shape): bilinear with antialiasing (PIL's filter)."""
    if img.shape[1:] == shape:
        return img
    tensor = torch.from_numpy(np.ascontiguousarray(img))[None]
    out = F.interpolate(tensor, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return out[0].numpy()


def _one_channel(raw: np.ndarray, what: str) -> np.ndarray:
    if raw.ndim == 3:
        if raw.shape[2] != 1:
            raise FrameError(f"{what} frames have one channel, this one has {raw.shape[2]}")
        raw = raw[..., 0]
    return raw


def _depth(raw: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Sensor units -> (1, H, W) in [0, 1] at the model's shape: near = 1, far and holes = 0."""
    raw = _one_channel(raw, "depth")
    if raw.dtype not in DEPTH_DTYPES:
        hint = " (8-bit images hold no sensor depth; save depth as 16-bit PNG, TIFF or .npy)"
        raise FrameError(f"depth frames must be 16/32-bit integers or floats, not {raw.dtype}" + hint)
    mm = raw.astype(np.float32) * np.float32(spec.depth_unit_mm)
    valid = np.isfinite(mm) & (mm > 0)
    near, far = spec.depth_range
    unit = np.where(valid, (far - np.clip(mm, near, far)) / (far - near), 0.0).astype(np.float32)
    if not spec.fill_holes:
        return _resize(unit[None], spec.shape)
    # Normalised convolution: resize value·valid and valid and divide, so holes do not drag
    # their neighbours towards "far". Pixels still mostly empty are inpainted where they are
    # enclosed by measurements (sensor dropouts); empty regions reaching the frame's border
    # are background (out of range, or removed) and stay far. All at the model's resolution,
    # where it is cheap.
    both = _resize(np.stack([unit * valid, valid.astype(np.float32)]), spec.shape)
    empty = both[1] < 0.5
    filled = np.where(empty, 0.0, both[0] / np.maximum(both[1], 0.5)).astype(np.float32)
    _count, labels = cv2.connectedComponents(empty.astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    enclosed = empty & ~np.isin(labels, border)
    if enclosed.any():
        filled = cv2.inpaint(filled, enclosed.astype(np.uint8), 3, cv2.INPAINT_NS)
    return np.clip(filled, 0.0, 1.0)[None]


def _intensity(raw: np.ndarray, raw_range: tuple[float, float] | None = None) -> np.ndarray:
    """Integer or float pixels -> float32 in [0, 1], refusing what has no clear scale; 8- and
    16-bit pixels from ``raw_range`` (black, white on the 16-bit scale: ``FrameSpec.raw_range``)
    where given, else from the full scale.

    Scaled in place: one float copy of a large frame, not two."""
    if raw.dtype in (np.uint8, np.uint16) and raw_range is not None:
        img = raw.astype(np.float32)
        if raw.dtype == np.uint8:
            img *= EIGHT_BIT
        img -= raw_range[0]
        img /= raw_range[1] - raw_range[0]
        return np.clip(img, 0.0, 1.0, out=img)
    if raw.dtype in (np.uint8, np.uint16):
        img = raw.astype(np.float32)
        img /= 255.0 if raw.dtype == np.uint8 else 65535.0
        return img
    if raw.dtype in (np.float32, np.float64):
        img = raw.astype(np.float32)
        if not np.isfinite(img).all() or img.min() < 0.0 or img.max() > 1.0:
            raise FrameError("float grey/colour frames must hold finite values in [0, 1]")
        return img
    raise FrameError(f"unsupported pixel type {raw.dtype} (expected 8/16-bit integers or floats in [0, 1])")


def flatten(img: np.ndarray, sigma: float) -> np.ndarray:
    """(C, H, W) in [0, 1] -> its local contrast x / G_σ(x), halved so an even surface sits at 0.5."""
    lighting = np.stack([cv2.GaussianBlur(channel, (0, 0), sigma) for channel in img])
    return np.clip(0.5 * img / (lighting + FLATTEN_FLOOR), 0.0, 1.0)


class Prepared(NamedTuple):
    """A frame as a model input, and its level: the mean of the input before flat-fielding (in
    [0, 1]). Flat-fielding divides a lamp's or an exposure's change away from the pixels, so the
    drift monitor watches the level beside the scores (pipeline/drift.py)."""

    pixels: np.ndarray  # float32 (C, H, W) in [0, 1]
    level: float


def _region(raw: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """A decoded array cropped to the spec's region of interest (itself where none is set);
    FrameError where the region lies outside it."""
    if spec.roi is None:
        return raw
    x, y, w, h = spec.roi
    if x + w > raw.shape[1] or y + h > raw.shape[0]:
        raise FrameError(
            f"region of interest {spec.roi} lies outside the {raw.shape[1]}x{raw.shape[0]} image"
        )
    return raw[y : y + h, x : x + w]


def prepare(raw: np.ndarray, spec: FrameSpec) -> Prepared:
    """Raw decoded array -> the model input at the model's resolution, with its level."""
    check_spec(spec)
    raw = _region(raw, spec)
    if spec.mode == "depth":
        depth = np.ascontiguousarray(_depth(raw, spec), dtype=np.float32)
        return Prepared(depth, float(depth.mean()))
    if raw.ndim == 3 and raw.shape[2] == 4:
        raw = raw[..., :3]  # alpha carries no appearance (dropped before the float copy is made)
    img = _intensity(raw, spec.raw_range)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if spec.mode == "grey":
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img = img[None]
    else:
        img = (np.stack([img] * 3) if img.ndim == 2 else img.transpose(2, 0, 1)).astype(np.float32)
    img = np.clip(_resize(img, spec.shape), 0.0, 1.0)
    level = float(img.mean())
    if spec.flatten:
        img = flatten(img, spec.flatten)
    return Prepared(np.ascontiguousarray(img, dtype=np.float32), level)


def preprocess(raw: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Raw decoded array -> float32 (C, H, W) in [0, 1] at the model's resolution."""
    return prepare(raw, spec).pixels


def frame_from_bytes(data: bytes, spec: FrameSpec, max_bytes: int = MAX_DECODED_BYTES) -> Prepared:
    """Decode and prepare the bytes of one file (an upload, a frame to score or train on)."""
    try:
        return prepare(decode(data, spec.max_pixels, max_bytes), spec)
    except cv2.error as exc:
        raise FrameError(f"cannot preprocess the image: {_first_line(exc)}") from exc


FLAT_SPREAD = 1 / 255  # a frame whose pixels all lie within this of each other shows nothing


def stored_shape(path: str | Path, spec: FrameSpec) -> tuple[int, int]:
    """(rows, columns) a file's frame has before resizing (its region of interest's, where one is
    set), from the file's header: no pixel is decoded."""
    return _stored_shape(read_bytes(path, spec), spec)


def _stored_shape(data: bytes, spec: FrameSpec) -> tuple[int, int]:
    if data.startswith(b"\x93NUMPY"):
        height, width = _decode_npy(data, spec.max_pixels, MAX_DECODED_BYTES).shape[:2]
    else:
        header = next((read(data) for signature, read in SIGNATURES if data.startswith(signature)), None)
        if header is None:
            raise FrameError("not a readable image: unknown format or no size in its header")
        height, width = header.height, header.width
    return (spec.roi[3], spec.roi[2]) if spec.roi is not None else (height, width)


def file_resolution(
    path: str | Path, spec: FrameSpec, max_bytes: int = MAX_DECODED_BYTES
) -> np.ndarray | None:
    """A file's frame as ``load_frame`` reads it, but at the file's own resolution (its region of
    interest's) and not flat-fielded: what its maps are drawn over. None where that is the model's
    resolution anyway, or where the file no longer reads (it changed since it was scored)."""
    try:
        data = read_bytes(path, spec)
        height, width = _stored_shape(data, spec)
        if (height, width) == spec.shape:
            return None
        own = dataclasses.replace(spec, image_size=height, width=width, flatten=0.0)
        return frame_from_bytes(data, own, max_bytes).pixels
    except FrameError:
        return None


# A frame holds colour where its channels differ by more than this on average (in [0, 1]): a
# grey picture saved as RGB, or as a colour JPEG, differs by rounding only (at most 1/255).
COLOUR_SPREAD = 2 / 255
MODE_SAMPLE = 32  # files decoded, evenly spread, to tell colour frames from grey ones
# The sampled files' pixels between these percentiles span black to white (``measured_raw_range``):
# a few hot or dead pixels do not set the scale.
LEVEL_PERCENTILES = (0.1, 99.9)
EIGHT_BIT = 65535 / 255  # an 8-bit level on the 16-bit scale of ``FrameSpec.raw_range``
# Levels spanning at least this share of their scale are read as they are: stretching them gains
# little contrast and moves what the detector was validated on (the magnetic tiles' 11-254 stretched
# to black and white: image 0.950, pooled pixel 0.837 against 0.948 / 0.845 as they are).
NARROW = 0.5
LEVEL_PIXELS = 65_536  # pixels of each sampled file, evenly spread, that the percentiles count
# The working range a depth sample measures (``measured_depth_range``) reaches this share of its span beyond
# its depths each way (a span of at least RANGE_MIN_MM): a frame a little nearer or farther than
# the training frames keeps its shape instead of clipping.
RANGE_MARGIN, RANGE_MIN_MM = 0.1, 10.0


def detect_mode(paths: Sequence[Path], spec: FrameSpec) -> tuple[str, str]:
    """The mode for training files whose spec says ``auto``: ``colour`` where at least half of a
    sample of them hold colour, else ``grey``; and why, in a line. Grey would drop a colour-only
    defect (a wrong wire, a stain of the same brightness). Depth is never guessed: a 16-bit
    single-channel file may hold grey levels as well (read so, between its own levels: depth
    maps come out as a picture of near dark and far bright); the line says so where the files
    are such."""
    colour = wide = read = 0
    for raw in _sampled(paths, spec):
        if raw.ndim == 3 and raw.shape[2] >= 3:
            rgb = _intensity(raw[::4, ::4, :3])
            colour += float((rgb.max(axis=2) - rgb.min(axis=2)).mean()) > COLOUR_SPREAD
        else:
            wide += raw.dtype.kind in "ui" and raw.dtype.itemsize >= 2
        read += 1
    if read and 2 * colour >= read:
        why = f"{colour} of {read} sampled files hold colour: colour frames (--mode grey reads them as grey)"
        return "colour", why
    why = f"{read - colour} of {read} sampled files hold no colour: grey frames" if read else "grey frames"
    if wide:
        why += (
            f"; {wide} hold 16-bit levels, read as brightness: for depth maps give --mode depth"
            " (and the sensor's unit, --depth-unit-mm, for ranges given in mm)"
        )
    return "grey", why


def _sampled(paths: Sequence[Path], spec: FrameSpec) -> Iterator[np.ndarray]:
    """Up to MODE_SAMPLE of these files, evenly spread, decoded (the ones that read), cropped to the
    region of interest where one is set."""
    for path in paths[:: max(1, len(paths) // MODE_SAMPLE)][:MODE_SAMPLE]:
        try:
            raw = _region(decode(read_bytes(path, spec), spec.max_pixels), spec)
        except FrameError:
            continue  # the loading reports it
        yield raw


def _thinned(raw: np.ndarray) -> np.ndarray:
    """About LEVEL_PIXELS of a decoded frame's pixels, evenly spread over it, flat."""
    step = max(1, int(math.sqrt(raw.shape[0] * raw.shape[1] / LEVEL_PIXELS)))
    return raw[::step, ::step].ravel()


def measured_raw_range(paths: Sequence[Path], spec: FrameSpec) -> tuple[tuple[float, float] | None, str]:
    """The levels training files of ``spec`` (grey or colour, 8- or 16-bit) are read between, on
    the 16-bit scale: their LEVEL_PERCENTILES, where most of a sample of them hold integer levels
    (else None); and a line that says so. A camera of 10 or 12 bits writes 16-bit files whose levels
    fill 1/64 or 1/16 of the full scale, a depth map read as grey a few percent of it, and an 8-bit
    camera exposed for its brightest part leaves the rest in a fraction of its levels: at full scale
    such frames are dark and flat, their objects below the glimpse's threshold and their defects
    below the backbone's notice. Stretched once, by the training frames' own range, every frame
    after is read the same way (an 8-bit and a 16-bit file of one scene alike). Levels that span
    NARROW of the scale or more are left at full scale (None)."""
    if spec.mode == "depth":
        return None, ""
    pixels, files, sixteen = [], 0, 0
    for raw in _sampled(paths, spec):
        files += 1
        if raw.dtype in (np.uint8, np.uint16):
            sixteen += raw.dtype == np.uint16
            pixels.append(_thinned(raw) * (EIGHT_BIT if raw.dtype == np.uint8 else 1.0))
    if not files or 2 * len(pixels) <= files:
        return None, ""
    low, high = (float(v) for v in np.percentile(np.concatenate(pixels), LEVEL_PERCENTILES))
    scale, bits = (1.0, "16-bit") if 2 * sixteen > len(pixels) else (EIGHT_BIT, "8-bit")
    shown = f"{low / scale:g}-{high / scale:g}" if high > low else f"{low / scale:g}"
    held = f"{len(pixels)} sampled files hold {bits} levels {shown}"
    if high <= low:
        return None, f"{len(pixels)} sampled files hold one {bits} level ({shown}): read at full scale"
    if high - low >= NARROW * 65535:
        return None, f"{held}: read at full scale (at least {NARROW:.0%} of it)"
    return (low, high), (
        f"{held} ({LEVEL_PERCENTILES[0]:g}th-{LEVEL_PERCENTILES[1]:g}th percentile): read as black to white"
    )


def measured_depth_range(paths: Sequence[Path], spec: FrameSpec) -> tuple[tuple[float, float] | None, str]:
    """The working range (near, far mm) that holds a sample of depth files' measured depths: their
    LEVEL_PERCENTILES, widened by RANGE_MARGIN of the span each way (near no closer than 0); and a
    line that says so. None where no sampled file holds a measured depth. A fixed range fits one
    rig: a scene beyond it reads as holes, and a part in a narrow band of it shows its dents as a
    fraction of a grey level."""
    depths = []
    for raw in _sampled(paths, spec):
        if raw.ndim == 3 and raw.shape[2] == 1:
            raw = raw[..., 0]
        if raw.ndim == 2 and raw.dtype in DEPTH_DTYPES:
            mm = _thinned(raw).astype(np.float64) * spec.depth_unit_mm
            depths.append(mm[np.isfinite(mm) & (mm > 0)])
    measured = np.concatenate(depths) if depths else np.empty(0)
    if not measured.size:
        return None, ""
    low, high = (float(v) for v in np.percentile(measured, LEVEL_PERCENTILES))
    margin = RANGE_MARGIN * max(high - low, RANGE_MIN_MM)
    near, far = max(0.0, low - margin), high + margin
    return (round(near, 1), round(far, 1)), (
        f"{len(depths)} sampled files measure depths of {low:.0f}-{high:.0f} mm ({LEVEL_PERCENTILES[0]:g}th-"
        f"{LEVEL_PERCENTILES[1]:g}th percentile at {spec.depth_unit_mm:g} mm per unit): working range "
        f"{near:.0f}-{far:.0f} mm (--near-mm, --far-mm set it)"
    )


def check_frames_vary(frames: np.ndarray, spec: FrameSpec) -> str | None:
    """Why these preprocessed frames (N, C, H, W) cannot be what was meant, or None: most of them
    hold one value (within FLAT_SPREAD). Depth in the wrong units does that silently: frames of
    1/8 mm units read as millimetres lie beyond far_mm, all clipped to blank, and a model trained
    on them scores every frame alike."""
    if len(frames) == 0:
        return None
    flat = frames.reshape(len(frames), -1)
    blank = int((flat.max(axis=1) - flat.min(axis=1) < FLAT_SPREAD).sum())
    if 2 * blank <= len(frames):
        return None
    if spec.mode == "depth":
        near, far = spec.depth_range
        why = (
            f"read at {spec.depth_unit_mm:g} mm per sensor unit, their depths fall outside the working "
            f"range {near:g}-{far:g} mm; give the sensor's unit (--depth-unit-mm, "
            "frames.depth_unit_mm; an SR305 writes 0.125) or the range (--near-mm, --far-mm)"
        )
    else:
        why = "each is blank (one grey level): check the files, the region of interest and flatten"
    return f"{blank} of {len(frames)} frames are (near) constant after preprocessing: {why}"


def check_file_size(size: int, spec: FrameSpec) -> None:
    """Refuse a file larger than any image of ``spec.max_pixels`` pixels could be, before reading it."""
    if size > spec.max_pixels * BYTES_PER_PIXEL_BOUND + (1 << 20):
        raise FrameError(f"file of {size} bytes is too large for {spec.max_pixels} pixels")


def read_bytes(path: str | Path, spec: FrameSpec) -> bytes:
    """A frame file's bytes, refused (FrameError) where the file is too large to be a frame of
    ``spec`` or cannot be read."""
    path = Path(path)
    try:
        check_file_size(path.stat().st_size, spec)
        return path.read_bytes()
    except OSError as exc:
        raise FrameError(f"cannot read file: {exc.strerror or exc}") from exc


def read_frame(path: str | Path, spec: FrameSpec, max_bytes: int = MAX_DECODED_BYTES) -> Prepared:
    """Read and prepare one file; raises FrameError with a reason a person can act on."""
    return frame_from_bytes(read_bytes(path, spec), spec, max_bytes)


def load_frame(path: str | Path, spec: FrameSpec, max_bytes: int = MAX_DECODED_BYTES) -> np.ndarray:
    """A file's model input alone (``read_frame`` without the level)."""
    return read_frame(path, spec, max_bytes).pixels


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
