"""Rows made directly, for the tests of the store and of what reads it (the product registers
frames and results in batches, through the pipeline)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from inspector.store import queries
from inspector.store.models import Frame, utcnow


def register_model(
    session: Session, version: str = "m1", method: str = "vaegan-attn", default_threshold: float = 0.5
) -> None:
    queries.ensure_model(
        session, version=version, method=method, path="m.pt", default_threshold=default_threshold, config={}
    )


def register_frames(session: Session, n: int, source: str = "cam", first: int = 0) -> list[int | None]:
    """Frames with contents first … first + n - 1, one at a time; None for a content already known."""
    rows = [
        {
            "content_hash": f"{i:064x}",
            "path": f"/in/{i}.png",
            "source": source,
            "size_bytes": 1,
            "landed_at": utcnow(),
        }
        for i in range(first, first + n)
    ]
    return [queries.insert_frames(session, [row]).get(row["path"]) for row in rows]


def insert_result(session: Session, **values: Any) -> bool:
    """Store one result (method vaegan-attn unless given); True if stored."""
    return queries.insert_results(session, [{"method": "vaegan-attn", **values}]) == 1


def frame_by_hash(session: Session, content_hash: str) -> Frame | None:
    return queries.frames_by_hash(session, [content_hash]).get(content_hash)
