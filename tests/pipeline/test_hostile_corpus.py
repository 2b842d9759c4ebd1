"""A generated corpus of over 300 hostile files through the real watcher (`inspector watch`,
embedded): every file ends scored, quarantined with a reason, a duplicate archived, or left
alone (sidecars by pattern, counted; links, pipes and hidden files); the watcher never stops;
nothing outside the folder is read (decoys' atime, inode and bytes); decode memory stays
within the bound the README states (peak RSS of the watcher process).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from inspector.config import Settings
from inspector.pipeline.ledger import path_text
from inspector.store.db import session_scope
from inspector.store.models import Frame, Result
from tests.conftest import TINY_SIZE, blob_frames, encoded, npy_bytes, png_header
from tests.pipeline.conftest import settings_env, until

pytestmark = pytest.mark.slow

MAX_DECODED = 16 << 20  # watch.max_decoded_bytes for this run
# The bound the README states: decoding one frame takes at most about 6 x max_decoded_bytes
# (the raw pixels, one float32 copy, the resize); 8 x leaves room for the batch around it.
DECODE_BOUND = 8 * MAX_DECODED
SCORED, QUARANTINED, EITHER = "scored", "quarantined", "scored or quarantined"
IGNORED, LEFT = "ignored by pattern", "left alone"  # LEFT: links, pipes, hidden files


@dataclass
class Corpus:
    incoming: Path
    expected: dict[Path, str] = field(default_factory=dict)  # file -> what must become of it
    reasons: dict[Path, str] = field(default_factory=dict)  # a pattern its quarantine reason matches
    contents: dict[bytes, list[Path]] = field(default_factory=dict)  # frames by their bytes

    def add(self, name: str | bytes, data: bytes, expect: str, reason: str = "") -> Path:
        path = self.incoming / os.fsdecode(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.expected[path] = expect
        if reason:
            self.reasons[path] = reason
        if expect in (SCORED, QUARANTINED, EITHER):
            self.contents.setdefault(data, []).append(path)
        return path

    @property
    def copies(self) -> list[list[Path]]:
        """Files of the same bytes: one frame each, the other files archived as its duplicates."""
        return [paths for paths in self.contents.values() if len(paths) > 1]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _grey(seed: int, size: int = TINY_SIZE) -> np.ndarray:
    return (blob_frames(1, size=size, seed=seed)[0, 0] * 255).astype(np.uint8)


def _good(seed: int) -> dict[str, bytes]:
    """One normal frame in every format the product reads."""
    grey = _grey(seed)
    colour = np.dstack([grey, grey // 2, grey])
    return {
        ".png": encoded(grey),
        ".jpg": encoded(grey, ".jpg"),
        ".tif": encoded(grey, ".tif"),
        ".bmp": encoded(colour, ".bmp"),
        ".npy": npy_bytes(grey.astype(np.float32) / 255),
        "-16.png": encoded(grey.astype(np.uint16) * 257),
        "-rgba.png": encoded(np.dstack([colour, np.full_like(grey, 255)]).astype(np.uint16) * 257),
        "-16.tif": encoded(grey.astype(np.uint16) * 257, ".tif"),
    }


def write_corpus(incoming: Path, outside: Path) -> Corpus:
    corpus = Corpus(incoming)
    rng = np.random.default_rng(17)
    seed = iter(range(1000, 10**6))

    # Normal frames of every format, some in folders below.
    for i in range(20):
        for suffix, data in _good(next(seed)).items():
            folder = f"line{i % 3}/" if i % 2 else ""
            corpus.add(f"{folder}good-{i:02d}{suffix}", data, SCORED)
    # Wrong extensions: told by the content, not the name.
    for i, (suffix, fake) in enumerate(
        [(".png", ".jpg"), (".jpg", ".png"), (".tif", ".bmp"), (".npy", ".png")]
    ):
        for k in range(3):
            corpus.add(f"wrong-{i}{k}{fake}", _good(next(seed))[suffix], SCORED)
    for k in range(3):
        corpus.add(f"text-{k}.png", f"not an image {k}\n".encode() * 20, QUARANTINED, "unknown format")
    # Truncated and corrupt files of every format.
    for suffix, data in _good(next(seed)).items():
        for cut in (1, 8, 20, 40, len(data) // 2, len(data) * 9 // 10, len(data) - 1):
            corpus.add(f"cut/{suffix[1:]}-{cut}{suffix}", data[:cut], EITHER)
        for k in range(3):
            damaged = bytearray(data)
            start = int(rng.integers(8, len(data) - 16))
            damaged[start : start + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
            corpus.add(f"corrupt/{suffix[1:]}-{k}{suffix}", bytes(damaged), EITHER)
    # Empty files: one content, so one frame (quarantined as empty) and the rest duplicates of it.
    for suffix in (".png", ".jpg", ".tif", ".bmp", ".npy", ".dat"):
        corpus.add(f"empty{suffix}", b"", QUARANTINED, "empty")
    # Bombs: refused from the header, before any decoding.
    big = np.zeros((1500, 1500, 4), np.uint16)  # 18 MB decoded, a small file
    big[::50, ::50] = 65535
    over = "exceeds the limit|over the limit"
    for name, data in [
        ("bomb-pixels.png", png_header(100_000, 100_000) + bytes(64)),
        ("bomb-bytes.png", png_header(7000, 7000, 16, 6) + bytes(64)),
        ("bomb-real.png", encoded(big)),
        ("bomb.jpg", b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xdc\xff\xdc\x03" + bytes(64)),
        ("bomb.tif", _tiff_header(10**6, 10**6)),
        ("bomb.bmp", b"BM" + bytes(12) + struct.pack("<IiiHH", 40, 60000, 60000, 1, 24) + bytes(32)),
        ("bomb.npy", _npy_header((99999, 99999))),
    ]:
        corpus.add(name, data, QUARANTINED, over)
    # Just under the byte limit: decoded for real, which is what the memory bound is about.
    near = np.zeros((1400, 1400, 4), np.uint16)
    for k in range(2):
        near[k::40, ::40] = 40000
        corpus.add(f"near-limit-{k}.png", encoded(near), SCORED)
    # Huge headers.
    png = _good(next(seed))[".png"]
    corpus.add("huge-text.png", png[:33] + _chunk(b"tEXt", b"k\x00" + bytes(2 << 20)) + png[33:], SCORED)
    jpg = _good(next(seed))[".jpg"]
    corpus.add("huge-app.jpg", jpg[:2] + (b"\xff\xe1\xff\xff" + bytes(65533)) * 20 + jpg[2:], SCORED)
    corpus.add("huge-ifd.tif", b"II*\x00\x08\x00\x00\x00\xff\xff" + bytes(100), QUARANTINED, "no size")
    # Poison TIFFs: sample types OpenCV's colour conversion refuses.
    for dtype in (np.int32, np.int8, np.int16):
        corpus.add(f"poison-{dtype.__name__}.tif", encoded(np.full((8, 8, 3), 7, dtype), ".tif"), QUARANTINED)
    corpus.add("poison-float64.tif", encoded(np.full((8, 8, 3), 0.5), ".tif"), SCORED)
    corpus.add(
        "poison-float64-big.tif", encoded(np.full((8, 8, 3), 7.0), ".tif"), QUARANTINED, "in \\[0, 1\\]"
    )
    corpus.add("poison-nan.tif", encoded(np.full((8, 8), np.nan, np.float32), ".tif"), QUARANTINED)
    # Names: not UTF-8, and as long as a file system allows.
    for k in range(4):
        corpus.add(b"latin-\xe9t\xe9-%d.png" % k, _good(next(seed))[".png"], SCORED)
    corpus.add(b"bad-\xff\xfe.png", _good(next(seed))[".png"], SCORED)
    corpus.add(b"bad-\xff\xfe-cut.png", _good(next(seed))[".png"][:30], QUARANTINED)
    corpus.add(b"\xff" * 250 + b".png", _good(next(seed))[".png"], SCORED)
    for k in range(3):
        corpus.add(f"{k}" + "n" * 250 + ".png", _good(next(seed))[".png"], SCORED)
        corpus.add(f"{k}" + "é" * 125 + ".png", _good(next(seed))[".png"], SCORED)
    corpus.add("x" * 251 + ".png", b"\x89PNG\r\n\x1a\n", QUARANTINED)
    # Sidecars, ignored by pattern; hidden and temporary files, never looked at.
    for k, name in enumerate(
        [
            "a.txt",
            "b.json",
            "c.csv",
            "d.xml",
            "e.md",
            "f.png.error.txt",
            "G.TXT",
            "line0/h.json",
        ]
        + [f"frame-{k}.json" for k in range(13)]
    ):
        corpus.add(name, f"sidecar {k}\n".encode(), IGNORED)
    corpus.add("good-00.txt", _good(next(seed))[".png"], IGNORED)  # a frame by content, a sidecar by name
    for name in (".hidden.png", ".cache/x.png", "upload.png.tmp", "upload.png.partial"):
        corpus.add(name, _good(next(seed))[".png"], LEFT)
    # Duplicates: the same bytes under other names and folders.
    for k in range(5):
        data = _good(next(seed))[".png"]
        for folder in ("", "line0/", "again/"):
            corpus.add(f"{folder}dup-{k}.png", data, SCORED)
    # Links to outside files and folders, dangling, looping; pipes.
    for decoy in sorted(outside.glob("*.png")):
        link = incoming / f"link-{decoy.name}"
        link.symlink_to(decoy)
        corpus.expected[link] = LEFT
    for k in range(2):
        link = incoming / f"outside-folder-{k}"
        link.symlink_to(outside, target_is_directory=True)
        corpus.expected[link] = LEFT
    for name, target in [("dangling.png", incoming / "nowhere.png"), ("loop.png", incoming / "loop.png")]:
        (incoming / name).symlink_to(target)
        corpus.expected[incoming / name] = LEFT
    for k in range(3):
        os.mkfifo(incoming / f"pipe-{k}.png")
        corpus.expected[incoming / f"pipe-{k}.png"] = LEFT
    return corpus


def _tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF whose first directory holds only its size (LONG values)."""
    entries = struct.pack("<HHII", 256, 4, 1, width) + struct.pack("<HHII", 257, 4, 1, height)
    return b"II*\x00" + struct.pack("<IH", 8, 2) + entries + bytes(4 + 64)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return stream.getvalue() + bytes(16)


def _decoys(outside: Path) -> dict[Path, os.stat_result]:
    """Files (and their folder) outside the watched one, dated so that a read would move their
    access time (the mount is relatime: atime moves when it is older than mtime)."""
    for k in range(5):
        cv2.imwrite(str(outside / f"decoy-{k}.png"), _grey(90 + k))
    for path in [*outside.iterdir(), outside]:
        mtime = path.stat().st_mtime_ns
        os.utime(path, ns=(mtime - 10**12, mtime))
    return {path: path.stat() for path in [*outside.iterdir(), outside]}


def _write_slowly(path: Path, data: bytes) -> None:
    """The issue's writer: 20 KB, a 3 s pause, then the rest."""
    with path.open("wb") as file:
        file.write(data[:20_000])
        file.flush()
        time.sleep(3)
        file.write(data[20_000:])


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _frames(settings: Settings) -> dict[str, tuple[Frame, int]]:
    """Each frame by its stored path, with its number of results."""
    with session_scope(settings.db_url) as session:
        results = Counter(session.scalars(select(Result.frame_id)))
        return {f.path: (f, results[f.id]) for f in session.scalars(select(Frame))}


def test_a_hostile_corpus_through_the_real_watcher(tmp_path: Path, embedded: Settings) -> None:
    incoming, outside = tmp_path / "incoming", tmp_path / "outside"
    incoming.mkdir()
    outside.mkdir()
    decoys = _decoys(outside)
    env = os.environ | settings_env(embedded)
    env |= {
        "INSPECTOR_WATCH__SETTLE_SECONDS": "0.2",
        "INSPECTOR_WATCH__RESCAN_SECONDS": "1",
        "INSPECTOR_WATCH__QUIET_SECONDS": "2",  # the slow writers pause longer, their files open
        "INSPECTOR_WATCH__MAX_DECODED_BYTES": str(MAX_DECODED),
    }
    log = (tmp_path / "watcher.log").open("w+")
    cli = [sys.executable, "-c", "from inspector.cli import main; main()", "watch", str(incoming)]
    watcher = subprocess.Popen(cli, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        cv2.imwrite(str(incoming / "warm-up.png"), _grey(1))  # the model loaded, the first batch scored
        until(lambda: len(_frames(embedded)) == 1 and list(incoming.iterdir()) == [], 120)
        assert watcher.poll() is None and list(incoming.iterdir()) == [], "the watcher did not start"
        baseline = _peak_rss(watcher.pid)

        started = time.monotonic()
        corpus = write_corpus(incoming, outside)
        slow = [incoming / f"slow-{k}.png" for k in range(5)]
        writers = [
            threading.Thread(target=_write_slowly, args=(path, encoded(_noise(k))))
            for k, path in enumerate(slow)
        ]
        for thread in writers:
            thread.start()
        corpus.expected.update(dict.fromkeys(slow, SCORED))
        remaining = {path for paths in corpus.contents.values() for path in paths} | set(slow)

        def settled() -> bool:
            waiting = any(f.status not in ("done", "quarantined") for f, _ in _frames(embedded).values())
            return not waiting and not any(os.path.lexists(path) for path in remaining)

        for thread in writers:
            thread.join()
        until(settled, 90)
        elapsed = time.monotonic() - started
        assert watcher.poll() is None, "the watcher stopped"
        peak = _peak_rss(watcher.pid)
    finally:
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=60)
    log.seek(0)
    output = log.read()
    assert code == 0 and "Traceback" not in output and "step failed" not in output, output[-3000:]
    assert settled(), [path for path in remaining if os.path.lexists(path)]

    # Every file ended as expected.
    frames = _frames(embedded)
    outcome: Counter[str] = Counter()
    copies = {path for group in corpus.copies for path in group}
    for path, expect in corpus.expected.items():
        if path in copies:
            continue
        row = frames.get(path_text(path))
        if expect in (IGNORED, LEFT):
            assert os.path.lexists(path) and row is None, path
            outcome[expect] += 1
            continue
        assert row is not None and not os.path.lexists(path), (path, expect)
        frame, results = row
        assert frame.status in ("done", "quarantined")
        got = SCORED if frame.status == "done" else QUARANTINED
        assert expect in (got, EITHER), (path, expect, frame.error)
        if got == SCORED:
            assert results == 1 and frame.stored_path, (path, frame.id)
            assert (embedded.data_path / frame.stored_path).is_file(), path
        else:
            stored = embedded.data_path / frame.stored_path
            assert results == 0 and frame.error and stored.is_file(), path
            assert frame.error in stored.with_name(stored.name + ".error.txt").read_text()
            assert re.search(corpus.reasons.get(path, ""), frame.error), (path, frame.error)
        outcome[got] += 1
    duplicates = embedded.data_path / "archive" / "duplicates"
    archived = {hashlib.sha256(path.read_bytes()).hexdigest() for path in duplicates.iterdir()}
    for data, group in corpus.contents.items():  # one frame of each content, the other files archived
        if len(group) == 1:
            continue
        rows = [frames[path_text(path)][0] for path in group if path_text(path) in frames]
        assert len(rows) == 1 and not any(os.path.lexists(path) for path in group), group
        got = SCORED if rows[0].status == "done" else QUARANTINED
        assert all(corpus.expected[path] in (got, EITHER) for path in group), (group, rows[0].error)
        assert hashlib.sha256(data).hexdigest() in archived, group
        outcome["duplicate"] += len(group) - 1
        outcome[got] += 1

    # Nothing outside was read or moved.
    for path, before in decoys.items():
        after = path.stat()
        assert (after.st_ino, after.st_atime_ns, after.st_mtime_ns) == (
            before.st_ino,
            before.st_atime_ns,
            before.st_mtime_ns,
        ), path

    files = len(corpus.expected)
    ignored = sum(expect == IGNORED for expect in corpus.expected.values())
    assert files >= 300 and sum(outcome.values()) == files
    assert f"ignored {ignored}" in output
    assert peak - baseline < DECODE_BOUND, (peak, baseline)
    print(
        f"\nhostile corpus: {files} files in {elapsed:.1f} s: "
        + ", ".join(f"{kind} {n}" for kind, n in sorted(outcome.items()))
        + f"; watcher peak RSS {peak / 2**20:.0f} MiB ({baseline / 2**20:.0f} MiB before the corpus)"
    )


def _noise(seed: int) -> np.ndarray:
    """200x200 grey noise: a PNG of about 40 KB, so 20 KB is half of it."""
    return np.random.default_rng(seed).integers(0, 256, (200, 200), dtype=np.uint8)
