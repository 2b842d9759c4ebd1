"""Frame files on disk: which ones to look at, their content hash, and where they go afterwards.

A frame file is only ever reached from ``/`` one path component at a time, each opened
without following a link (``O_NOFOLLOW``; folders as ``O_PATH`` descriptors), and moved by a
rename relative to its folder's descriptor. The watcher resolves its root when it starts, so
a registered path holds no link; a folder swapped for a link to somewhere else afterwards
makes the read or move fail instead of reaching outside the watched folder.

Paths are stored as text (:func:`path_text`). Stored locations (archive, quarantine) are kept
relative to data_dir, so processes that mount data_dir at different places agree on them.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import quote_from_bytes, unquote_to_bytes

from inspector.store.models import Frame

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".tmp", ".partial")  # an uploader's temporary names: never complete frames
CHUNK = 1 << 20
NAME_MAX = 255  # bytes in one file name (ext4, XFS, Btrfs)
NOTE_SUFFIX = ".error.txt"  # the quarantine note beside a stored file
LONGEST_SUFFIX = 16  # bytes: a longer "suffix" is part of the name, not an extension
ENCODED = "fs:"  # prefix of a stored path whose bytes are not UTF-8 (see path_text)
_FOLDER_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A link on the way (ELOOP for the last component, ENOTDIR for a folder): treated as gone.
_LINK_ERRORS = (errno.ELOOP, errno.ENOTDIR)


def path_text(path: Path) -> str:
    """How a frame's path is stored: as is, or, where its bytes are not UTF-8 (a name written
    in another encoding), ``fs:`` and the bytes percent-encoded (``fs:/in/bad-%FF.png``).

    Reversible by :func:`text_path`, and never mistaken for a plain path: a registered path is
    absolute, so it starts with ``/``.
    """
    text = str(path)
    try:
        text.encode()
    except UnicodeEncodeError:  # surrogate escapes: bytes the file system name had
        return ENCODED + quote_from_bytes(os.fsencode(path), safe="/")
    return text


def text_path(text: str) -> Path:
    """A stored path back as the file system path it was made from."""
    if text.startswith(ENCODED):
        return Path(os.fsdecode(unquote_to_bytes(text[len(ENCODED) :])))
    return Path(text)


def is_ignored(path: Path, root: Path) -> bool:
    """Dotfiles, files in dot-folders and files an uploader is still writing under a temporary name."""
    parts = path.relative_to(root).parts
    return any(part.startswith(".") for part in parts) or ignored_name(path.name)


def ignored_name(name: str) -> bool:
    """A file name :func:`is_ignored` leaves alone wherever it lies: a dotfile, a temporary name."""
    return name.startswith(".") or os.path.splitext(name)[1].lower() in IGNORED_SUFFIXES


def matches(path: Path, patterns: tuple[str, ...]) -> bool:
    """Whether the file name matches one of the glob patterns (``watch.ignore``), in any case."""
    return _pattern(patterns).match(path.name) is not None


@functools.lru_cache(maxsize=8)
def _pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """The glob patterns as one regular expression: a scan matches thousands of names."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)", re.IGNORECASE)


def walk_folders(top: Path, skip: Callable[[Path], bool]) -> Iterator[tuple[Path, list[str]]]:
    """Each folder under top (top first) with its file names; neither the folders ``skip`` names
    nor links to folders are entered (each folder is opened relative to its parent and checked
    to be the one listed, so one swapped for a link meanwhile is not entered either)."""
    for folder, subfolders, files, _fd in os.fwalk(top):
        base = Path(folder)
        subfolders[:] = [d for d in subfolders if not skip(base / d)]
        yield base, files


class Folders:
    """Folder descriptors, each reached from ``/`` (or the working folder) one component at a
    time, a component that is a link (or ``..``) raising OSError instead of being followed.

    Kept open for one burst of work (a look at the folder, a registration), each folder and its
    ancestors opened once: a thousand files in one folder cost one walk, not a thousand. A
    descriptor stays the folder it was opened as, so keep one only for that burst: close().
    """

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}

    def __enter__(self) -> Folders:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def fd(self, folder: Path) -> int:
        found = self._fds.get(folder)
        if found is not None:
            return found
        if folder.name == "..":
            raise OSError(errno.EINVAL, "a frame path may not go up a folder", str(folder))
        if folder == folder.parent:  # "/" or "."
            fd = os.open(folder, _FOLDER_FLAGS)
        else:
            fd = os.open(folder.name, _FOLDER_FLAGS, dir_fd=self.fd(folder.parent))
        self._fds[folder] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


@contextmanager
def _folder_of(path: Path, folders: Folders | None) -> Iterator[int]:
    """The descriptor of path's folder: from ``folders``, or opened for this one call."""
    if folders is not None:
        yield folders.fd(path.parent)
        return
    with Folders() as own:
        yield own.fd(path.parent)


def _open_plain(path: Path, folders: Folders | None = None) -> BinaryIO:
    """Open a plain file for reading; a link (anywhere on the way), pipe or device raises OSError."""
    with _folder_of(path, folders) as folder:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a plain file", str(path))
    return os.fdopen(fd, "rb")


def read_nofollow(path: Path, limit: int = -1, folders: Folders | None = None) -> bytes:
    """The file's bytes (at most ``limit`` of them, where given)."""
    with _open_plain(path, folders) as file:
        return file.read(limit)


def lstat(path: Path, folders: Folders | None = None) -> os.stat_result:
    """The file's own status (a link's, not its target's), reached as every read is."""
    with _folder_of(path, folders) as folder:
        return os.stat(path.name, dir_fd=folder, follow_symlinks=False)


def open_for_writing(path: Path) -> bool | None:
    """Whether a process holds the file open for writing: Linux grants a read lease only when
    none does. None where leases cannot tell (a file of another user, a file system or an OS
    without them)."""
    if not hasattr(fcntl, "F_SETLEASE"):
        return None
    try:
        with _open_plain(path) as file:
            try:
                fcntl.fcntl(file.fileno(), fcntl.F_SETLEASE, fcntl.F_RDLCK)
            except OSError as exc:
                return True if exc.errno == errno.EAGAIN else None
            fcntl.fcntl(file.fileno(), fcntl.F_SETLEASE, fcntl.F_UNLCK)  # at once: a writer never waits
    except OSError:
        return None
    return False


class Hashed(NamedTuple):
    digest: str  # SHA-256, hex
    size: int
    mtime: float  # of the file that was read, from its own descriptor


def hash_file(path: Path, folders: Folders | None = None) -> Hashed:
    """SHA-256, size and modification time of a plain file."""
    digest, size = hashlib.sha256(), 0
    with _open_plain(path, folders) as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        mtime = os.fstat(file.fileno()).st_mtime
    return Hashed(digest.hexdigest(), size, mtime)


def _fit(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` bytes of UTF-8 where it is longer, its suffix kept."""
    if len(name.encode()) <= limit:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix.encode()) <= LONGEST_SUFFIX else ""
    stem = name[: len(name) - len(suffix)].encode()[: limit - len(suffix.encode())]
    return stem.decode(errors="ignore") + suffix


def _stored_name(content_hash: str, path: str) -> str:
    """The hash prefix and the frame's own name, short enough for one file name with its note."""
    name = Path(path).name
    return _fit(f"{content_hash[:12]}-{name}", NAME_MAX - len(NOTE_SUFFIX))


def archive_location(frame: Frame) -> str:
    return f"archive/{frame.landed_at:%Y-%m-%d}/{_stored_name(frame.content_hash, frame.path)}"


def quarantine_location(frame: Frame) -> str:
    return f"quarantine/{_stored_name(frame.content_hash, frame.path)}"


def final_location(frame: Frame, archive: bool) -> str | None:
    """Where a finished frame's file belongs: its stored location, or None to leave it in place."""
    if frame.stored_path:
        return frame.stored_path
    if frame.status == "quarantined":
        return quarantine_location(frame)
    return archive_location(frame) if frame.status == "done" and archive else None


def duplicate_location(frame: Frame, path: Path) -> str:
    return f"archive/duplicates/{_stored_name(frame.content_hash, path_text(path))}"


class Mover:
    """Moves of frame files into data_dir, for one batch: the source folders are reached once
    (:class:`Folders`) and each target folder is made and opened once, not once per file."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._sources = Folders()
        self._targets: dict[Path, int] = {}

    def __enter__(self) -> Mover:
        return self

    def __exit__(self, *_: object) -> None:
        self._sources.close()
        for fd in self._targets.values():
            os.close(fd)
        self._targets.clear()

    def _target(self, folder: Path) -> int:
        fd = self._targets.get(folder)
        if fd is None:
            folder.mkdir(parents=True, exist_ok=True)
            fd = self._targets[folder] = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return fd

    def move(self, source: Path, location: str, note: str | None = None) -> bool:
        """Move a frame file to its stored location (with a note beside it); False if it is gone,
        or reachable only through a link now (then nothing is moved).

        A rename relative to the source's folder, safely opened (a link as the last component is
        moved as the link, never followed), replacing what was there; a copy and delete only where
        the data folder is on another file system.
        """
        target = self.data_dir / location
        fd = self._target(target.parent)
        if note is not None:
            target.with_name(target.name + NOTE_SUFFIX).write_text(note + "\n")
        try:
            folder = self._sources.fd(source.parent)
            try:
                os.replace(source.name, target.name, src_dir_fd=folder, dst_dir_fd=fd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                _copy_across(source.name, folder, target.name, fd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno not in _LINK_ERRORS:
                raise
            log.warning("not moving %s: a link on its way (%s)", source, exc.strerror)
            return False
        return True


def move(source: Path, data_dir: Path, location: str, note: str | None = None) -> bool:
    """One file's :meth:`Mover.move`."""
    with Mover(data_dir) as mover:
        return mover.move(source, location, note)


def move_files(data_dir: Path, moves: Iterable[tuple[Path, str, str | None]]) -> set[Path]:
    """Move each file (source, location, note) on its own: one that cannot be moved (a full disk,
    no permission) is logged and does not keep the others in place. Returns the sources that are
    not at their location: not moved, or gone without having been moved there (the watcher's
    rescan and a scorer may both move a frame that was just finished: one of them finds it gone)."""
    unmoved = set()
    with Mover(data_dir) as mover:
        for source, location, note in moves:
            try:
                if mover.move(source, location, note) or (data_dir / location).exists():
                    continue
            except OSError as exc:
                log.warning("cannot move %s to %s (%s): the rescan tries again", source, location, exc)
            unmoved.add(source)
    return unmoved


def _copy_across(name: str, source_folder: int, target: str, target_folder: int) -> None:
    """Copy to the other file system under a temporary name, rename it into place, then unlink."""
    temporary = f".{target}.copying"[:NAME_MAX]
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=source_folder)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a plain file", name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(temporary, flags, 0o644, dir_fd=target_folder), "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    os.replace(temporary, target, src_dir_fd=target_folder, dst_dir_fd=target_folder)
    os.unlink(name, dir_fd=source_folder)
