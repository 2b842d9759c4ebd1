"""Process groups of the multiprocess metrics: which folders a scrape reads, and which are forgotten."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from inspector import metrics


def group(root: Path, name: str, silent_for: float) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / metrics.ALIVE).touch()
    stamp = time.time() - silent_for
    os.utime(folder / metrics.ALIVE, (stamp, stamp))
    return folder


def test_dead_groups_are_forgotten_once_silent(tmp_path: Path) -> None:
    host = metrics._host()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    gone = int(dead.stdout)  # a pid that has exited
    folders = {
        "dead, silent": group(tmp_path, f"watcher-{host}-{gone}", 7200),
        "dead, recent": group(tmp_path, f"watcher-{host}-{gone + 1000000}", 10),  # a cron run just ended
        "alive, silent": group(tmp_path, f"worker-{host}-{os.getpid()}", 7200),  # its touch thread is slow
        "elsewhere, silent": group(tmp_path, "worker-other-box-1", 7200),
        "elsewhere, recent": group(tmp_path, "worker-other-box-2", 10),
    }
    removed = metrics.forget_dead_groups(tmp_path, stale_seconds=3600)
    assert sorted(removed) == sorted([folders["dead, silent"].name, folders["elsewhere, silent"].name])
    assert {name for name, folder in folders.items() if folder.exists()} == {
        "dead, recent",
        "alive, silent",
        "elsewhere, recent",
    }
