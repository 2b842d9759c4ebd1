"""Linux inotify, read by the watcher's own loop: which files appeared and which are complete.

Kept to what the watcher needs (a path, whether its writer is done with it, whether to
rescan) and read without threads. A general library (watchdog) pairs every move's two
events by searching the queue of all pending events, on three threads sharing the watcher's
interpreter lock: in a burst of renamed-in frames that search grew with the burst and was
most of the watcher's CPU time.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inspector.pipeline.ledger import ignored_name, walk_folders

log = logging.getLogger(__name__)

# From <sys/inotify.h>.
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# A file appearing (created, or renamed in: the uploader's atomic hand-over) and a writer
# closing it. Not the opens and reads of our own hashing, nor anything leaving the folder.
# Only folders, never through a link (a folder swapped for one is not watched).
MASK = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR | IN_DONT_FOLLOW
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows


@dataclass
class Changes:
    paths: set[Path] = field(default_factory=set)  # files that appeared or were written
    complete: set[Path] = field(default_factory=set)  # of those, closed after writing or renamed in
    rescan: bool = False  # a folder appeared (its files may have no events) or events were lost


class Inotify:
    """Watches on every folder under ``root`` except those ``skip`` names; closed by close()."""

    def __init__(self, root: Path, skip: Callable[[Path], bool]):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._skip = skip
        self._folders: dict[int, Path] = {}  # watch descriptor -> folder
        self.add_tree(root)

    @classmethod
    def open(cls, root: Path, skip: Callable[[Path], bool]) -> Inotify | None:
        """Watches on root's tree, or None where the system has no inotify (the watcher then scans)."""
        try:
            return cls(root, skip)
        except (AttributeError, OSError) as exc:  # not Linux, or no inotify instance left
            log.warning("no inotify (%s): finding files by scanning the folder", exc)
            return None

    def add_tree(self, top: Path) -> None:
        """Watch top and every folder below it (links to folders are not entered, as in a scan)."""
        for folder, _files in walk_folders(top, self._skip):
            self._watch(folder)

    def _watch(self, folder: Path) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), MASK)
        if wd >= 0:
            self._folders[wd] = folder
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOENT, errno.ENOTDIR):  # gone again: nothing to watch
            log.warning("cannot watch %s (%s): its files are found by the rescans", folder, os.strerror(code))

    def wait(self, timeout: float) -> bool:
        """Wait up to timeout seconds for events; True if some are waiting."""
        return bool(select.select([self._fd], [], [], max(0.0, timeout))[0])

    def read(self) -> Changes:
        """Every event waiting, without blocking."""
        changes = Changes()
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return changes
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                self._note(changes, wd, mask, name)

    def _note(self, changes: Changes, wd: int, mask: int, name: bytes) -> None:
        if mask & IN_Q_OVERFLOW:
            changes.rescan = True
            return
        if mask & IN_IGNORED:  # the folder was deleted (or moved out of the file system)
            self._folders.pop(wd, None)
            return
        folder = self._folders.get(wd)
        if folder is None or not name:
            return
        decoded = os.fsdecode(name)
        if not mask & IN_ISDIR and ignored_name(decoded):
            return  # an uploader's temporary file (three events a frame written and renamed) or a dotfile
        path = folder / decoded
        if mask & IN_ISDIR:
            if not self._skip(path):
                self.add_tree(path)  # a folder moved in keeps its watch descriptor: re-mapped here
                changes.rescan = True
            return
        changes.paths.add(path)
        if mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
            changes.complete.add(path)

    def close(self) -> None:
        os.close(self._fd)
