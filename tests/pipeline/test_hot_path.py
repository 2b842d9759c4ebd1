"""The watcher's settle rule when looks come quicker than settle_seconds (the event-driven loop)."""

from __future__ import annotations

import time
from pathlib import Path

from inspector.config import Settings
from inspector.pipeline.executors import InlineExecutor
from inspector.pipeline.watcher import Watcher


def test_a_file_is_ready_only_after_holding_still_for_settle_seconds(
    tmp_path: Path, embedded: Settings
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    watcher = Watcher(incoming, embedded, InlineExecutor(embedded))
    frame = incoming / "f.png"
    frame.write_bytes(b"\x89PNG")
    assert watcher.look({frame}, settle=0.3) == []  # first look
    assert watcher.look(set(), settle=0.3) == []  # too soon for a second look
    assert watcher._next_look(0.3) is not None
    time.sleep(0.3)
    with frame.open("ab") as f:
        f.write(b"more")
    assert watcher.look(set(), settle=0.3) == []  # changed: the clock starts again
    time.sleep(0.3)
    assert watcher.look(set(), settle=0.3) == [frame]
    assert watcher._next_look(0.3) is None
