"""Reviewed frames as a data set that can be rebuilt and audited: `inspector export` writes the
frames and a manifest (CSV and JSON), `inspector retrain` reads labelled frames from the database
or from such an export. Every frame's bytes are checked against the content hash it was
registered under; one that is gone (pruned) or changed is listed with the reason, never
silently left out. The SQL is store/dataset.py's.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from inspector.config import Settings
from inspector.pipeline.ledger import text_path
from inspector.store.dataset import DatasetRow, dataset_rows
from inspector.store.db import session_scope
from inspector.store.models import utcnow

MANIFEST = "manifest"  # manifest.csv and manifest.json in the export folder
FIELDS = (
    "path",  # the frame's file in the export, relative to it ("" where it could not be exported)
    "source",
    "label",
    "score",
    "model_version",
    "method",
    "reviewer",
    "threshold",
    "flagged",
    "reviewed_at",
    "note",
    "frame_id",
    "content_hash",
    "landed_at",
    "landed_path",
    "missing",  # why the file is not in the export (pruned, gone, changed)
)


class DatasetError(ValueError):
    """An export or a manifest that cannot be used."""


@dataclass
class LabelledFile:
    """A frame to train on or evaluate with: its content, label, and where its bytes lie."""

    content_hash: str
    label: str | None
    source: str
    file: Path | None  # None: not available (``missing`` says why)
    missing: str = ""


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)  # never through a link
    except OSError:
        return False


def locate(
    settings: Settings, stored_path: str | None, landed_path: str, pruned_at: datetime | None
) -> tuple[Path | None, str]:
    """Where a frame's bytes lie now: its archive file, else where it landed (not archived); or
    None and why not."""
    if pruned_at is not None:
        return None, f"pruned at {pruned_at:%Y-%m-%d %H:%M} (retention)"
    places = [settings.data_path / stored_path] if stored_path else []
    places.append(text_path(landed_path))
    found = next((place for place in places if _plain_file(place)), None)
    return found, "" if found is not None else "its file is gone"


def located(settings: Settings, row: DatasetRow) -> LabelledFile:
    file, missing = locate(settings, row.stored_path, row.landed_path, row.pruned_at)
    return LabelledFile(row.content_hash, row.label, row.source, file, missing)


def read_checked(item: LabelledFile) -> bytes | None:
    """The frame's bytes, if its file still holds the content it was registered with; else None,
    with the reason in ``item.missing``."""
    if item.file is None:
        return None
    try:
        data = item.file.read_bytes()
    except OSError as exc:
        item.missing = f"cannot read {item.file}: {exc.strerror or exc}"
        return None
    if hashlib.sha256(data).hexdigest() != item.content_hash:
        item.missing = f"{item.file} holds other content than the frame registered"
        return None
    return data


@dataclass
class Exported:
    out: Path
    rows: int = 0
    written: int = 0
    missing: list[str] = field(default_factory=list)  # "frame <id>: why"
    by_label: dict[str, int] = field(default_factory=dict)


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat(timespec="seconds") + "Z"


def export(
    settings: Settings,
    out: Path,
    since: datetime | None = None,
    source: str | None = None,
    reviewed: bool = True,
) -> Exported:
    """Write the frames (reviewed since ``since``; without ``reviewed``, every frame scored since)
    under OUT/frames/<label>/ and the manifest, in CSV and JSON, beside them. OUT must be new or
    empty: an export is one consistent set."""
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty: export into a new folder")
    with session_scope(settings.db_url) as session:
        rows = dataset_rows(session, since, source, reviewed)
    done = Exported(out, rows=len(rows))
    records = []
    for row in rows:
        item = located(settings, row)
        data = read_checked(item)
        label = row.label or "unlabelled"
        relative = ""
        if data is not None:
            name = text_path(row.landed_path).name
            relative = f"frames/{label}/{row.frame_id}-{name}"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            (out / relative).write_bytes(data)
            done.written += 1
            done.by_label[label] = done.by_label.get(label, 0) + 1
        else:
            done.missing.append(f"frame {row.frame_id}: {item.missing}")
        records.append(
            {
                "path": relative,
                "source": row.source,
                "label": row.label or "",
                "score": row.score,
                "model_version": row.model_version,
                "method": row.method,
                "reviewer": row.reviewer or "",
                "threshold": row.threshold,
                "flagged": row.is_anomaly,
                "reviewed_at": _iso(row.reviewed_at),
                "note": row.note or "",
                "frame_id": row.frame_id,
                "content_hash": row.content_hash,
                "landed_at": _iso(row.landed_at),
                "landed_path": row.landed_path,
                "missing": item.missing if data is None else "",
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{MANIFEST}.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(records)
    header = {
        "exported_at": _iso(utcnow()),
        "reviewed_only": reviewed,
        "since": _iso(since),
        "source": source,
        "fields": list(FIELDS),
    }
    (out / f"{MANIFEST}.json").write_text(json.dumps({**header, "frames": records}, indent=1) + "\n")
    return done


def read_manifest(folder: Path) -> list[LabelledFile]:
    """The labelled frames of an export (its manifest.json), their files inside it."""
    manifest = folder / f"{MANIFEST}.json"
    try:
        frames: list[dict[str, Any]] = json.loads(manifest.read_text())["frames"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{manifest} is not an inspector export's manifest: {exc}") from exc
    items = []
    for record in frames:
        relative = record.get("path") or ""
        file = (folder / relative).resolve() if relative else None
        if file is not None and not file.is_relative_to(folder.resolve()):
            raise DatasetError(f"{manifest}: {relative!r} lies outside the export")
        items.append(
            LabelledFile(
                record["content_hash"],
                record.get("label") or None,
                record["source"],
                file,
                record.get("missing", ""),
            )
        )
    return items


def from_database(
    settings: Settings, since: datetime | None = None, source: str | None = None
) -> list[LabelledFile]:
    """The reviewed frames of the database, where their files lie now."""
    with session_scope(settings.db_url) as session:
        rows = dataset_rows(session, since, source, reviewed=True)
    return [located(settings, row) for row in rows]
