"""`inspector report`: what was scored since a time, frame by frame, with a summary.

The summary covers every result in the window (and source), so `--flagged` narrows the
rows without changing the rate, and counts the frames quarantined and the duplicate files
found meanwhile (`inspector quarantine list` names the quarantined ones). Each row names the
file where it lies now (its archive file once moved, not the folder it landed in). Times
are UTC, as stored.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from inspector.store import queries
from inspector.store.models import utcnow
from inspector.store.queries import ReportRow

PERCENTILES = (50, 90, 99)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'2h', '30m', '1d' ago, or an ISO time such as 2026-11-27T10:00 (UTC unless it says otherwise)."""
    now = now or utcnow()
    match = _AGO.match(text)
    if match:
        return now - timedelta(**{_UNITS[match[2].lower()]: float(match[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a duration (2h, 30m, 1d) or an ISO time: {text!r}") from None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass
class Summary:
    frames: int
    flagged: int
    rate: float
    percentiles: dict[str, float | None] = field(default_factory=dict)
    quarantined: int = 0  # frames quarantined in the window
    duplicates: int = 0  # files that landed with a registered frame's content


@dataclass
class Report:
    since: datetime
    source: str | None
    rows: list[ReportRow]
    summary: Summary
    data_dir: Path  # where stored paths lie


def build_report(
    session: Session,
    data_dir: Path,
    since: datetime,
    flagged: bool = False,
    source: str | None = None,
    limit: int | None = None,
) -> Report:
    scored = queries.report_scores(session, since, source=source)
    scores = np.fromiter((s for s, _ in scored), dtype=np.float64, count=len(scored))
    n_flagged = sum(flag for _, flag in scored)
    quarantined, duplicates = queries.report_counts(session, since, source)
    summary = Summary(
        frames=len(scored),
        flagged=n_flagged,
        rate=n_flagged / len(scored) if scored else 0.0,
        percentiles={f"p{p}": float(np.percentile(scores, p)) if len(scores) else None for p in PERCENTILES},
        quarantined=quarantined,
        duplicates=duplicates,
    )
    rows = queries.report_rows(session, since, flagged=flagged, source=source, limit=limit)
    return Report(since=since, source=source, rows=rows, summary=summary, data_dir=data_dir)


def stored_file(data_dir: Path, stored_path: str | None, landed: str) -> str:
    """Where a frame's file lies now: its stored file, else where it landed (not moved yet)."""
    return str(data_dir / stored_path) if stored_path else landed


def _row_dict(row: ReportRow, data_dir: Path) -> dict:
    data = asdict(row)
    data["file"] = stored_file(data_dir, data.pop("stored_path"), row.path)
    data["scored_at"] = row.scored_at.isoformat(timespec="seconds") + "Z"
    data["verdict"] = "anomaly" if row.is_anomaly else "normal"
    return data


def summary_line(summary: Summary) -> str:
    pct = "  ".join(
        f"{name} {'-' if value is None else f'{value:.5g}'}" for name, value in summary.percentiles.items()
    )
    aside = f"; {summary.quarantined} quarantined, {summary.duplicates} duplicate files"
    return f"{summary.frames} frames, {summary.flagged} flagged ({summary.rate:.1%}); score {pct}{aside}"


def render(report: Report, fmt: str) -> str:
    """The report as a table (rows then summary), CSV (rows only) or JSON (both)."""
    rows = [_row_dict(r, report.data_dir) for r in report.rows]
    if fmt == "json":
        payload = {
            "since": report.since.isoformat(timespec="seconds") + "Z",
            "source": report.source,
            "summary": asdict(report.summary),
            "rows": rows,
        }
        return json.dumps(payload, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        fields = [
            "scored_at",
            "frame_id",
            "source",
            "file",
            "path",
            "score",
            "threshold",
            "verdict",
            "model_version",
            "method",
        ]
        writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    header = ("scored at (UTC)", "frame", "source", "score", "threshold")
    lines = ["{:<20}  {:>7}  {:<12}  {:>10}  {:>10}  verdict  file".format(*header)]
    lines += [
        f"{r['scored_at'][:19]:<20}  {r['frame_id']:>7}  {r['source']:<12.12}  {r['score']:>10.5g}  "
        f"{r['threshold']:>10.5g}  {r['verdict']:<7}  {r['file']}"
        for r in rows
    ]
    lines.append(summary_line(report.summary))
    return "\n".join(lines)
