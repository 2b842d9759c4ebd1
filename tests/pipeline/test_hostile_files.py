"""Files that must never stop scoring, strand a frame or lead outside the watched folder:
poison decodes, writers that pause, folders swapped for links, names that are not UTF-8 or
too long for the archive, moves that fail."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from inspector import metrics
from inspector.config import Settings
from inspector.pipeline import ledger, process
from inspector.pipeline.executors import InlineExecutor
from inspector.pipeline.watcher import Watcher
from inspector.store.db import session_scope
from inspector.store.models import Frame
from tests.conftest import encoded
from tests.pipeline.conftest import counts, running, until, write_frames


def _frames(settings: Settings) -> dict[str, Frame]:
    """Every frame row by the name of the file it landed as."""
    with session_scope(settings.db_url) as session:
        return {Path(f.path).name: f for f in session.scalars(select(Frame))}


def _poison_tiff(path: Path, dtype: type) -> None:
    """A 3-channel TIFF of a sample type OpenCV's colour conversion refuses (issue 17, item 1)."""
    assert cv2.imwrite(str(path), np.full((8, 8, 3), 0.5).astype(dtype))


def test_a_poison_decode_quarantines_that_frame_and_the_rest_are_scored(
    tmp_path: Path, embedded: Settings
) -> None:
    incoming = tmp_path / "incoming"
    write_frames(incoming, 20)
    for dtype in (np.int32, np.int8):
        _poison_tiff(incoming / f"p-{dtype.__name__}.tif", dtype)
    _poison_tiff(incoming / "p-float64.tif", np.float64)  # floats in [0, 1]: a frame like any other
    Watcher(incoming, embedded).run_once()

    frames = _frames(embedded)
    for name in ("p-int32.tif", "p-int8.tif"):
        assert frames[name].status == "quarantined", name
        assert "unsupported pixel type" in frames[name].error
        assert (embedded.data_path / frames[name].stored_path).is_file()
    assert frames["p-float64.tif"].status == "done"
    assert counts(embedded.db_url) == (21, {"done": 21, "quarantined": 2}, 1)
    assert list(incoming.iterdir()) == []


def test_any_error_reading_one_frame_is_that_frames_quarantine_reason(
    tmp_path: Path, embedded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only FrameError: whatever a decoder raises for one file (cv2.error, a bug) quarantines
    that frame; its batch-mates are scored and nothing is handed back to be tried forever."""
    incoming = tmp_path / "incoming"
    paths = write_frames(incoming, 6)
    poison = paths[2].read_bytes()
    decode = process.frame_from_bytes

    def failing(data: bytes, *args: object) -> np.ndarray:
        if data == poison:
            raise RuntimeError("the decoder tripped over its own feet")
        return decode(data, *args)

    monkeypatch.setattr(process, "frame_from_bytes", failing)
    Watcher(incoming, embedded).run_once()
    frame = _frames(embedded)[paths[2].name]
    assert frame.status == "quarantined" and "RuntimeError" in frame.error and "own feet" in frame.error
    assert counts(embedded.db_url) == (5, {"done": 5, "quarantined": 1}, 1)


def _png(size: int, seed: int) -> bytes:
    """A grey PNG of noise, larger than 20 KB (noise does not compress)."""
    return encoded(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8))


@pytest.mark.parametrize("quiet", [10, 1], ids=["pause-within-quiet-seconds", "longer-pause-file-open"])
def test_a_writer_that_pauses_mid_file_gets_its_frame_scored(
    tmp_path: Path, embedded: Settings, quiet: float
) -> None:
    """The issue's writer: 20 KB, a 3 s pause, then the rest. The frame is registered while the
    writer pauses (its size held still for settle_seconds) and cannot be decoded yet; it must not
    be quarantined (the writer would finish into the quarantined file), but read again once the
    writer is done: it changed within quiet_seconds, or its writer still holds it open."""
    embedded.watch.quiet_seconds = quiet
    embedded.watch.settle_seconds = 0.5
    embedded.watch.rescan_seconds = 0.5  # the paused file is registered (and read) again and again
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _png(200, seed=3)
    assert len(data) > 30_000

    def writer() -> None:
        with (incoming / "slow.png").open("wb") as file:
            file.write(data[:20_000])
            file.flush()
            time.sleep(3)
            file.write(data[20_000:])

    with running(Watcher(incoming, embedded, InlineExecutor(embedded))):
        time.sleep(0.5)
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        until(lambda: counts(embedded.db_url)[0] == 1, 60)
    frame = _frames(embedded)["slow.png"]
    assert frame.status == "done" and frame.size_bytes == len(data)
    assert (embedded.data_path / frame.stored_path).read_bytes() == data
    assert counts(embedded.db_url) == (1, {"done": 1}, 1)
    assert not (embedded.data_path / "quarantine").exists()


def test_a_file_that_changed_after_registration_is_read_with_its_final_content(
    tmp_path: Path, embedded: Settings
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _png(64, seed=4)
    path = incoming / "late.png"
    path.write_bytes(data[:1000])
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    before = _counted(watcher.source)
    watcher.register([path])  # registered with its first 1000 bytes
    path.write_bytes(data)  # the writer was not done
    watcher.run_once()
    frame = _frames(embedded)["late.png"]
    assert frame.status == "done" and frame.size_bytes == len(data)
    assert (embedded.data_path / frame.stored_path).read_bytes() == data
    assert counts(embedded.db_url) == (1, {"done": 1}, 1)  # the first registration is gone
    assert watcher.stats["deferred"] == 1
    counted = {name: n - before[name] for name, n in _counted(watcher.source).items()}
    assert counted == {"registered": 2, "deferred": 1, "scored": 1}  # registered - deferred: landed


def _counted(source: str) -> dict[str, float]:
    """This process's frame counters of a source (Prometheus), kept in its memory (no group)."""
    scraped = metrics.registry(Settings(), every_group=False, pipeline=False)
    labels = {"source": source, "process": metrics.process_label()}
    return {
        name: scraped.get_sample_value(f"inspector_frames_{name}_total", labels) or 0.0
        for name in ("registered", "deferred", "scored")
    }


def test_an_unreadable_file_is_quarantined_once_it_held_still_for_quiet_seconds(
    tmp_path: Path, embedded: Settings
) -> None:
    embedded.watch.quiet_seconds = 1.5
    embedded.watch.rescan_seconds = 0.5
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    started = time.monotonic()
    (incoming / "cut.png").write_bytes(_png(64, seed=5)[:500])
    with running(Watcher(incoming, embedded, InlineExecutor(embedded))):
        until(lambda: counts(embedded.db_url)[1] == {"quarantined": 1}, 30)
    assert time.monotonic() - started >= 1.4  # not before it held still that long
    frame = _frames(embedded)["cut.png"]
    assert "corrupt or truncated" in frame.error
    assert (embedded.data_path / frame.stored_path).is_file()
    assert list(incoming.iterdir()) == []


def test_a_folder_swapped_for_a_link_leads_nowhere(tmp_path: Path, embedded: Settings) -> None:
    """Register in/sub/target.png, then replace in/sub with a link to an outside folder holding a
    file of the same name: the outside file is neither read nor moved."""
    incoming, outside = tmp_path / "in", tmp_path / "outside"
    (target,) = write_frames(incoming / "sub", 1, prefix="target")
    (decoy,) = write_frames(outside, 1, seed=9, prefix="target")
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    watcher.register([target])
    content, mtime = decoy.read_bytes(), decoy.stat().st_mtime_ns
    os.utime(decoy, ns=(mtime - 10**12, mtime))  # atime before mtime: a read (relatime) moves it
    before = decoy.stat()

    (incoming / "sub").rename(tmp_path / "elsewhere")
    (incoming / "sub").symlink_to(outside, target_is_directory=True)
    watcher.register([incoming / "sub" / target.name])  # an event for the swapped path: refused
    watcher.run_once()

    after = decoy.stat()
    assert decoy.read_bytes() == content and after.st_ino == before.st_ino
    assert after.st_atime_ns == before.st_atime_ns  # never read (the mount is relatime)
    frame = _frames(embedded)[target.name]
    assert frame.status == "quarantined" and "cannot read file" in frame.error
    assert frame.stored_path is None  # nothing was moved into quarantine
    assert not (embedded.data_path / "quarantine").exists() or not any(
        (embedded.data_path / "quarantine").glob("*.png")
    )
    assert (tmp_path / "elsewhere" / target.name).is_file()  # the real frame was not touched either


def test_a_name_that_is_not_utf8_is_registered_and_scored(tmp_path: Path, embedded: Settings) -> None:
    incoming = tmp_path / "incoming"
    (good, other, source) = write_frames(incoming, 3)
    bad = os.fsencode(incoming) + b"/bad-\xff\xfe.png"
    os.rename(source, bad)
    Watcher(incoming, embedded).run_once()

    assert counts(embedded.db_url) == (3, {"done": 3}, 1)
    with session_scope(embedded.db_url) as session:
        paths = set(session.scalars(select(Frame.path)))
    encoded = "fs:" + str(incoming) + "/bad-%FF%FE.png"  # stored as text, reversibly
    assert encoded in paths and {str(good), str(other)} <= paths
    assert os.fsencode(ledger.text_path(encoded)) == bad
    archived = sorted(p.name for p in (embedded.data_path / "archive").rglob("*.png"))
    assert any(name.endswith("-bad-%FF%FE.png") for name in archived)
    assert list(incoming.iterdir()) == []


@pytest.mark.parametrize("name", ["n" * 250 + ".png", "é" * 124 + ".png"])
def test_long_names_are_archived_and_quarantined_under_names_that_fit(
    tmp_path: Path, embedded: Settings, name: str
) -> None:
    """A name of up to 255 bytes is legal; the hash prefix must not push the stored one (and its
    .error.txt note) past that: it is shortened, keeping the prefix and the suffix."""
    incoming = tmp_path / "incoming"
    good, bad = write_frames(incoming, 2)
    good.rename(incoming / name)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bad.rename(incoming / ("x" + name))
    Watcher(incoming, embedded).run_once()

    assert counts(embedded.db_url) == (1, {"done": 1, "quarantined": 1}, 1)
    for frame in _frames(embedded).values():
        stored = embedded.data_path / frame.stored_path
        assert stored.is_file() and stored.suffix == ".png"
        assert stored.name.startswith(frame.content_hash[:12] + "-")
        assert len(stored.name.encode()) + len(".error.txt") <= 255
    assert list(incoming.iterdir()) == []


def test_a_failed_move_does_not_stop_the_others_and_the_rescan_retries_it(
    tmp_path: Path, embedded: Settings
) -> None:
    incoming = tmp_path / "incoming"
    paths = write_frames(incoming, 5)
    stuck = paths[1]
    landed = datetime.fromtimestamp(stuck.stat().st_mtime, UTC)
    content = stuck.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    blocker = embedded.data_path / f"archive/{landed:%Y-%m-%d}/{digest[:12]}-{stuck.name}"
    (blocker / "in-the-way").mkdir(parents=True)  # its archive move fails (a folder is there)
    Watcher(incoming, embedded).run_once()
    frames = _frames(embedded)
    assert counts(embedded.db_url) == (5, {"done": 5}, 1)
    assert [p.name for p in incoming.iterdir()] == [stuck.name]  # the other four were moved
    assert frames[stuck.name].stored_path is None  # not an archive path that holds no frame
    assert all((embedded.data_path / f.stored_path).is_file() for f in frames.values() if f.stored_path)

    shutil.rmtree(blocker)
    Watcher(incoming, embedded).run_once()  # the rescan moves it and records where
    stored = _frames(embedded)[stuck.name].stored_path
    assert stored is not None and (embedded.data_path / stored).read_bytes() == content
    assert list(incoming.iterdir()) == []
    assert counts(embedded.db_url) == (5, {"done": 5}, 1)


def test_sidecar_files_are_ignored_silently_and_counted(
    tmp_path: Path, embedded: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    incoming = tmp_path / "incoming"
    write_frames(incoming, 2)
    sidecars = ["f000.txt", "f000.json", "meta.CSV", "scan.xml", "README.md", "x.png.error.txt"]
    for name in sidecars:
        (incoming / name).write_text(f"camera metadata for {name}")
    watcher = Watcher(incoming, embedded)
    watcher.run_once()
    assert counts(embedded.db_url) == (2, {"done": 2}, 1)
    assert watcher.stats["ignored"] == len(sidecars)
    assert sorted(p.name for p in incoming.iterdir()) == sorted(sidecars)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]

    (incoming / "camera.log").write_text("a pattern of our own")
    embedded.watch.ignore = (*embedded.watch.ignore, "*.log")
    watcher = Watcher(incoming, embedded)
    watcher.run_once()
    assert watcher.stats["ignored"] == len(sidecars) + 1 and counts(embedded.db_url)[1] == {"done": 2}


def test_a_file_someone_else_moved_to_its_location_counts_as_moved(tmp_path: Path) -> None:
    """The watcher's rescan and a scorer may both move a frame that was just finished; the one that
    finds it gone must not clear its stored path (found by the hostile corpus)."""
    data_dir, source = tmp_path / "data", tmp_path / "in" / "f.png"
    source.parent.mkdir()
    source.write_bytes(b"frame")
    assert ledger.move_files(data_dir, [(source, "archive/d/f.png", None)]) == set()
    assert ledger.move_files(data_dir, [(source, "archive/d/f.png", None)]) == set()  # moved already
    assert ledger.move_files(data_dir, [(source, "archive/d/g.png", None)]) == {source}  # gone
