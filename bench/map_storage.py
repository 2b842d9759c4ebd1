"""What storing a frame's maps costs PostgreSQL: its CPU, the wall time and the bytes a frame takes,
with the maps uncompressed (migration 0004) and compressed by LZ4 (0013).

Results with their five maps are stored as the pipeline stores them (``queries.insert_results``,
64 frames a commit), their maps made by the pipeline's path (``process.stored_maps``, uncompressed PNG)
from the throughput benchmark's model and frames, into fresh databases migrated to each
revision, in turns (the machine is shared). The server's CPU is its backend's, read from
``/proc`` (the server runs on this machine).

    python -m bench.map_storage           # writes bench/results/map_storage.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text

from bench import cpu
from bench.provenance import git_commit, shared_machine
from bench.throughput import PG_SERVER, decoded, fresh_postgres, make_checkpoint, make_frames
from inspector.detector import Detector
from inspector.pipeline.process import stored_maps
from inspector.store import migrate, queries
from inspector.store.db import session_scope
from inspector.store.models import utcnow

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 64  # frames a commit (watch.batch_size)
REVISIONS = {"0012": "uncompressed (STORAGE EXTERNAL, since 0004)", "0013": "LZ4 (since 0013)"}


def pipeline_maps(count: int) -> list[dict[str, bytes]]:
    """Each frame's maps as the pipeline stores them: PNG bytes by kind."""
    with tempfile.TemporaryDirectory() as folder:
        make_checkpoint(Path(folder) / "model.pt")
        detector = Detector.load(Path(folder) / "model.pt", device="cpu")
    frames = decoded(make_frames(count))
    return stored_maps(frames, detector.score_arrays(frames))


def measure(revision: str, maps: list[dict[str, bytes]], frames: int) -> dict[str, float]:
    """Store ``frames`` frames' results and maps into a fresh database at ``revision``."""
    with fresh_postgres(PG_SERVER) as url:
        migrate.upgrade(url, revision)
        with session_scope(url) as session:
            queries.ensure_model(
                session, version="m", method="vaegan-attn", path="m.pt", default_threshold=1.0, config={}
            )
            rows = [
                {"content_hash": f"{i:064x}", "path": f"/in/{i}.png", "size_bytes": 1, "landed_at": utcnow()}
                for i in range(frames)
            ]
            ids = sorted(queries.insert_frames(session, rows).values())
        with session_scope(url) as session:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        used, wall = cpu.stat(pid)[0], time.perf_counter()
        for start in range(0, frames, BATCH):
            with session_scope(url) as session:  # the pool hands back the same connection
                results = [
                    {
                        "frame_id": i,
                        "model_version": "m",
                        "method": "vaegan-attn",
                        "score": 0.5,
                        "threshold": 1.0,
                        "is_anomaly": False,
                        "shadow": False,
                        "maps": maps[i % len(maps)],
                    }
                    for i in ids[start : start + BATCH]
                ]
                queries.insert_results(session, results)
        used, wall = cpu.stat(pid)[0] - used, time.perf_counter() - wall
        with session_scope(url) as session:
            size = session.execute(text("SELECT pg_total_relation_size('result_maps')")).scalar_one()
    return {"cpu_ms": 1000 * used / frames, "wall_ms": 1000 * wall / frames, "kib": size / 1024 / frames}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames stored in each turn")
    parser.add_argument("--turns", type=int, default=2, help="turns of both revisions")
    parser.add_argument("--out", type=Path, default=RESULTS / "map_storage.md")
    args = parser.parse_args(argv)
    started = time.time()
    maps = pipeline_maps(320)
    png = sum(len(b) for frame in maps for b in frame.values()) / len(maps) / 1024
    runs: dict[str, list[dict[str, float]]] = {revision: [] for revision in REVISIONS}
    for turn in range(args.turns):
        for revision in REVISIONS:
            runs[revision].append(measure(revision, maps, args.frames))
            print(f"turn {turn + 1}, {revision}: {runs[revision][-1]}", flush=True)
    lines = [
        "# Storing a frame's maps in PostgreSQL: uncompressed or LZ4 (issue 22)",
        "",
        f"- **command**: `{shlex.join(['python', '-m', 'bench.map_storage', *sys.argv[1:]])}`",
        f"- **commit**: {git_commit()}; {shared_machine('PostgreSQL on this machine (127.0.0.1)')}",
        f"- **wall time**: {(time.time() - started) / 60:.1f} min; finished {utcnow():%Y-%m-%dT%H:%M:%SZ}",
        f"- {args.frames} frames a turn, {BATCH} a commit, five maps each ({png:.1f} KiB of uncompressed PNG "
        "a frame: the throughput benchmark's model and frames)",
        "",
        "| maps stored | turn | server CPU (ms/frame) | wall (ms/frame) | table + TOAST (KiB/frame) |",
        "|---|---:|---:|---:|---:|",
    ]
    for revision, label in REVISIONS.items():
        for turn, run in enumerate(runs[revision], 1):
            lines.append(
                f"| {label} | {turn} | {run['cpu_ms']:.3f} | {run['wall_ms']:.3f} | {run['kib']:.1f} |"
            )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
