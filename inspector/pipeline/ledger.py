"""Frame files on disk: which ones to look at, their content hash, and where they go afterwards.

Stored locations (archive, quarantine) are kept relative to data_dir,
so processes that mount data_dir at different places agree on them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from inspector.store.models import Frame

IGNORED_SUFFIXES = (".tmp", ".partial")
CHUNK = 1 << 20


def is_ignored(path: Path, root: Path) -> bool:
    """Dotfiles, files in dot-folders and files an uploader is still writing under a temporary name."""
    parts = path.relative_to(root).parts
    return any(part.startswith(".") for part in parts) or path.suffix.lower() in IGNORED_SUFFIXES


def walk_folders(top: Path, skip: Callable[[Path], bool]) -> Iterator[tuple[Path, list[str]]]:
    """Each folder under top (top first) with its file names; neither the folders ``skip`` names
    nor links to folders are entered."""
    for folder, subfolders, files in os.walk(top):
        base = Path(folder)
        subfolders[:] = [d for d in subfolders if not skip(base / d)]
        yield base, files


def _open_plain(path: str | Path) -> BinaryIO:
    """Open a plain file for reading; a link (not followed), pipe or device raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a plain file", str(path))
    return os.fdopen(fd, "rb")


def read_nofollow(path: str | Path) -> bytes:
    with _open_plain(path) as file:
        return file.read()


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a plain file."""
    digest, size = hashlib.sha256(), 0
    with _open_plain(path) as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _stored_name(frame: Frame) -> str:
    return f"{frame.content_hash[:12]}-{Path(frame.path).name}"


def archive_location(frame: Frame) -> str:
    return f"archive/{frame.landed_at:%Y-%m-%d}/{_stored_name(frame)}"


def quarantine_location(frame: Frame) -> str:
    return f"quarantine/{_stored_name(frame)}"


def duplicate_location(frame: Frame, path: Path) -> str:
    return f"archive/duplicates/{frame.content_hash[:12]}-{path.name}"


def move(source: Path, data_dir: Path, location: str, note: str | None = None) -> bool:
    """Move a frame file to its stored location (with a note beside it); False if it is gone.

    A rename (a link is moved as the link, never followed), replacing what was there; a copy
    and delete only where the data folder is on another file system.
    """
    target = data_dir / location
    target.parent.mkdir(parents=True, exist_ok=True)
    if note is not None:
        target.with_name(target.name + ".error.txt").write_text(note + "\n")
    try:
        try:
            os.replace(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.move(source, target)
    except FileNotFoundError:
        return False
    return True
