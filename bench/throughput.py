"""Throughput and latency of the detector alone and of the whole pipeline: ``make bench-throughput``.

Measured in one run on one machine (issue 7):

1. **Detector alone** — ``vaegan-attn`` scoring (reconstruction + Grad-CAM + score) of
   84×84 frames already in memory, swept over batch sizes (and torch thread counts on a
   CPU); the best is the *ceiling*.
2. **Pipeline, embedded** — ``inspector watch`` (inline executor, SQLite) on a folder
   that frames land in, first at a steady offered rate of half the ceiling, then as a
   burst. Frames are written under a ``.tmp`` name and renamed, as an uploader should.
3. **Pipeline, distributed** — the same with the celery executor: the machine's Redis (a
   dedicated database number, flushed before and after) and PostgreSQL (a fresh database,
   dropped after), with 1 and 2 worker processes.

Latency is landed → committed from the database: ``frames.landed_at`` (the file's mtime,
set when the uploader wrote it) to ``results.created_at`` (stamped in the transaction
that commits the result). Throughput of a phase is frames ÷ (last committed − first
landed). The model is an untrained VAEGAN of the default architecture (``ModelConfig``
defaults, image size 84): the work per frame is the same as for a trained one.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import cv2
import numpy as np
import torch
from sqlalchemy import func, select

from inspector.config import FrameSpec
from inspector.detector import Checkpoint, Detector, resolve_device
from inspector.models import ModelConfig, build_model
from inspector.store import migrate
from inspector.store.db import dispose_engines, session_scope
from inspector.store.models import Frame, Result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "throughput.md"
INSPECTOR = [sys.executable, "-c", "from inspector.cli import main; main()"]
IMAGE_SIZE = 84
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database number of this benchmark's own
QUEUE = "bench-throughput"  # and a queue name of its own


@dataclass
class Budget:
    """What sizes a run; the defaults are the published configuration."""

    burst: int = 5000
    steady_seconds: float = 30.0
    sweep_seconds: float = 4.0  # per (threads, batch size) point of the detector sweep
    confirm_seconds: float = 15.0  # the sweep's best point measured again: the ceiling
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    settle_seconds: float = 0.5  # the shipped default (configs/default.yaml)
    timeout: float = 600.0  # the longest a phase may take to drain (--quick: 120)

    @classmethod
    def quick(cls) -> Budget:
        return cls(
            burst=200,
            steady_seconds=4.0,
            sweep_seconds=1.0,
            confirm_seconds=2.0,
            batch_sizes=(16, 64),
            timeout=120.0,
        )


@dataclass
class Load:
    """The 1-minute load average around a measurement: other work on the machine."""

    before: float
    after: float = float("nan")

    def __str__(self) -> str:
        return f"{self.before:.1f} → {self.after:.1f}"


@dataclass
class Ceiling:
    fps: float
    batch_size: int
    threads: int
    load: Load
    sweep: list[tuple[int, int, float]] = field(default_factory=list)  # threads, batch, fps


@dataclass
class Phase:
    """One measured stretch of frames through a pipeline."""

    mode: str
    phase: str
    frames: int
    offered_fps: float | None
    fps: float
    latency: tuple[float, float, float]  # landed → committed: p50, p95, p99 in seconds
    waiting: tuple[float, float]  # landed → registered (settling, looks): p50, p95
    scoring: tuple[float, float]  # registered → committed (queue, scoring): p50, p95
    cpu_ms: float  # CPU time of the pipeline's processes per frame
    load: Load


# --- the model and the frames ------------------------------------------------------------------


def make_checkpoint(path: Path) -> Checkpoint:
    """An untrained VAEGAN of the default benchmark architecture at 84×84, saved to path."""
    torch.manual_seed(0)
    config = ModelConfig(image_size=IMAGE_SIZE)
    model = build_model(config).eval()
    checkpoint = Checkpoint(
        model_config=config,
        frame_spec=FrameSpec(image_size=IMAGE_SIZE),
        state_dict=model.state_dict(),
        thresholds={"vaegan": 0.1, "vaegan-attn": 0.1},
        metadata={"note": "untrained: for throughput measurement only"},
    )
    checkpoint.save(path)
    return checkpoint


def make_frames(n: int, seed: int = 0) -> list[bytes]:
    """n distinct 84×84 grey PNGs: a bright disc at a jittered place on a noisy field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    frames = []
    for _ in range(n):
        cy, cx = IMAGE_SIZE / 2 + rng.uniform(-4, 4, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (IMAGE_SIZE / 5) ** 2) * 200.0
        image = np.clip(disc + 20 + rng.normal(0, 8, disc.shape), 0, 255).astype(np.uint8)
        ok, png = cv2.imencode(".png", image)
        assert ok
        frames.append(png.tobytes())
    return frames


def decoded(frames: Sequence[bytes]) -> np.ndarray:
    return np.stack([cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_GRAYSCALE) for f in frames])[
        :, None
    ].astype(np.float32) / np.float32(255.0)


# --- 1. the detector alone ---------------------------------------------------------------------


def _frames_per_second(
    checkpoint: Checkpoint, pixels: np.ndarray, device: str, threads: int, batch_size: int, seconds: float
) -> float:
    torch.set_num_threads(threads)
    detector = Detector(checkpoint, method="vaegan-attn", device=device, batch_size=batch_size)
    chunk = pixels[: max(batch_size, 256 // batch_size * batch_size)]
    detector.score_arrays(chunk[:batch_size])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        detector.score_arrays(chunk)
        done += len(chunk)
    return done / (time.perf_counter() - start)


def measure_detector(
    checkpoint: Checkpoint, pixels: np.ndarray, device: str, budget: Budget, threads: Sequence[int]
) -> Ceiling:
    """Frames/s of Detector.score_arrays for each (threads, batch size); the ceiling is the best
    point measured again for ``confirm_seconds``: the best of several short noisy measurements
    is biased upwards (each sweep point is short), the same point measured again is not."""
    load = Load(os.getloadavg()[0])
    sweep = []
    for n_threads in threads:
        for batch_size in budget.batch_sizes:
            fps = _frames_per_second(checkpoint, pixels, device, n_threads, batch_size, budget.sweep_seconds)
            sweep.append((n_threads, batch_size, fps))
            print(f"detector: {n_threads} thread(s), batch {batch_size}: {fps:.1f} frames/s", flush=True)
    best = max(sweep, key=lambda point: point[2])
    fps = _frames_per_second(checkpoint, pixels, device, best[0], best[1], budget.confirm_seconds)
    print(f"detector: best point again for {budget.confirm_seconds:g} s: {fps:.1f} frames/s", flush=True)
    load.after = os.getloadavg()[0]
    return Ceiling(fps=fps, batch_size=best[1], threads=best[0], load=load, sweep=sweep)


# --- 2 and 3. the pipeline ---------------------------------------------------------------------


def write_frames(folder: Path, prefix: str, frames: Sequence[bytes], rate: float | None) -> float:
    """Land frames in folder (write a .tmp, rename), at rate frames/s or at once; the rate achieved."""
    start = time.monotonic()
    for i, data in enumerate(frames):
        if rate is not None:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        tmp = folder / f"{prefix}-{i:05d}.png.tmp"
        tmp.write_bytes(data)
        tmp.rename(tmp.with_suffix(""))
    return len(frames) / max(time.monotonic() - start, 1e-9)


def _timings(url: str, folder: Path, prefix: str) -> np.ndarray:
    """(landed, registered, committed) of every result for frames of this phase, in epoch seconds."""
    with session_scope(url) as session:
        rows = session.execute(
            select(Frame.landed_at, Frame.registered_at, Result.created_at)
            .join(Result, Result.frame_id == Frame.id)
            .where(Frame.path.like(f"{folder}/{prefix}-%"))
        ).all()
    return np.array([[stamp.replace(tzinfo=UTC).timestamp() for stamp in row] for row in rows]).reshape(-1, 3)


def cpu_seconds(processes: Sequence[subprocess.Popen]) -> float:
    """User + system CPU time of these processes and their children (celery's pool), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pids = 0.0, [p.pid for p in processes]
    while pids:
        pid = pids.pop()
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
    return total


def _wait_for(
    url: str, folder: Path, prefix: str, n: int, timeout: float, alive: Sequence[subprocess.Popen]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(url) as session:
            done = session.scalar(
                select(func.count())
                .select_from(Frame)
                .where(Frame.path.like(f"{folder}/{prefix}-%"), Frame.status.in_(("done", "quarantined")))
            )
        if done >= n:
            return
        dead = [p.args for p in alive if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"{prefix}: {done}/{n} frames finished; exited: {dead}")
        time.sleep(0.2)


def run_phase(
    mode: str,
    phase: str,
    url: str,
    folder: Path,
    frames: Sequence[bytes],
    rate: float | None,
    timeout: float,
    alive: Sequence[subprocess.Popen],
) -> Phase:
    load, cpu = Load(os.getloadavg()[0]), cpu_seconds(alive)
    offered = write_frames(folder, phase, frames, rate)
    _wait_for(url, folder, phase, len(frames), timeout, alive)
    cpu, load.after = cpu_seconds(alive) - cpu, os.getloadavg()[0]
    landed, registered, committed = _timings(url, folder, phase).T
    if len(landed) != len(frames):
        raise RuntimeError(f"{mode} {phase}: {len(landed)} results for {len(frames)} frames")
    latency = committed - landed
    result = Phase(
        mode=mode,
        phase=phase,
        frames=len(frames),
        offered_fps=offered if rate else None,
        fps=len(frames) / (committed.max() - landed.min()),
        latency=tuple(np.percentile(latency, [50, 95, 99])),
        waiting=tuple(np.percentile(registered - landed, [50, 95])),
        scoring=tuple(np.percentile(committed - registered, [50, 95])),
        cpu_ms=1000 * cpu / len(frames),
        load=load,
    )
    p50, p95, p99 = result.latency
    print(
        f"{mode} {phase}: {result.fps:.1f} frames/s, latency p50 {p50:.3f} p95 {p95:.3f} p99 {p99:.3f} s "
        f"(registered after {result.waiting[0]:.3f}, committed {result.scoring[0]:.3f} later; "
        f"{result.cpu_ms:.1f} CPU ms/frame)",
        flush=True,
    )
    return result


def _start(command: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command), cwd=ROOT, env=os.environ | env, stdout=out, stderr=subprocess.STDOUT
        )


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_pipeline(
    mode: str,
    env: dict[str, str],
    url: str,
    workdir: Path,
    frames: Sequence[bytes],
    rate: float,
    budget: Budget,
    batch_size: int,
    workers: int = 0,
) -> list[Phase]:
    """Start a watcher (and workers), warm up, then the steady phase and the burst."""
    folder = workdir / "incoming"
    folder.mkdir(parents=True)
    migrate.upgrade(url)
    processes = [
        _start(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "--queues", QUEUE]
            + ["--concurrency", "1", "--hostname", f"bench{i}@%h", "--loglevel", "WARNING"],
            env,
            workdir / f"worker{i}.log",
        )
        for i in range(workers)
    ]
    processes.append(_start([*INSPECTOR, "watch", str(folder)], env, workdir / "watcher.log"))
    try:
        steady_n = max(1, round(rate * budget.steady_seconds))
        # The model loads on the first batch in each scoring process: two batches each first.
        n_warm = 2 * batch_size * max(1, workers)
        warm, steady, burst = frames[:n_warm], frames[n_warm : n_warm + steady_n], frames[n_warm + steady_n :]
        write_frames(folder, "warm", warm, None)
        _wait_for(url, folder, "warm", len(warm), budget.timeout, processes)
        return [
            run_phase(mode, "steady", url, folder, steady, rate, budget.timeout, processes),
            run_phase(mode, "burst", url, folder, burst[: budget.burst], None, budget.timeout, processes),
        ]
    finally:
        _stop(processes)
        dispose_engines()


@contextmanager
def fresh_postgres(server: str) -> Iterator[str]:
    import psycopg

    name = f"inspector_bench_{uuid.uuid4().hex[:12]}"
    admin = server.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_redis(url: str) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()


# --- the report --------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "gpu": gpu,
        "torch": torch.__version__,
        "commit": commit + (" (with uncommitted changes in the tree)" if dirty.strip() else ""),
        "python": platform.python_version(),
    }


def report(
    ceiling: Ceiling,
    phases: Sequence[Phase],
    info: dict[str, str],
    command: str,
    device: str,
    budget: Budget,
    batch: int,
) -> str:
    lines = [
        "# Throughput and latency (issue 7)",
        "",
        f"Command: `{command}`  ",
        f"Commit {info['commit']}, {time.strftime('%Y-%m-%d %H:%M %Z')}.  ",
        f"Machine: {info['cores']} cores, {info['cpu']}; GPU: {info['gpu']}; torch {info['torch']}, "
        f"Python {info['python']}; scoring device: {device}.",
        "",
        "Model: an *untrained* VAEGAN of the default architecture (`ModelConfig` defaults, 84×84, "
        "width 32, latent 64), method `vaegan-attn`. Training changes the weights, not the work per "
        "frame, so throughput is that of a trained model; the verdicts are meaningless.",
        "",
        "## Detector alone (the ceiling)",
        "",
        "| torch threads | batch | frames/s |",
        "|---:|---:|---:|",
        *(f"| {t} | {b} | {fps:.1f} |" for t, b, fps in ceiling.sweep),
        "",
        f"Ceiling: **{ceiling.fps:.1f} frames/s**: the sweep's best point ({ceiling.threads} thread(s), "
        f"batch {ceiling.batch_size}) measured again for {budget.confirm_seconds:g} s (the best of the "
        f"short sweep points is biased upwards); load average {ceiling.load}. "
        "`Detector.score_arrays` on frames already in memory: "
        "reconstruction, Grad-CAM and score, with the arrays copied back to the host.",
        "",
        "## Pipeline",
        "",
        f"Watch settings: batch size {batch} (the sweep's best from 32 up at the pipeline's torch threads), "
        f"settle {budget.settle_seconds} s (the shipped default; used only for files found by a scan), "
        "scoring and torch threads as in the mode column. Frames are written "
        "under a `.tmp` name and renamed into the watched folder: first at a steady offered rate of "
        f"half the ceiling for {budget.steady_seconds:g} s, then a burst of {budget.burst} at once.",
        "",
        "- frames/s: frames ÷ (last result committed − first frame landed), from the database.",
        "- latency: landed (`frames.landed_at`, the file's mtime) → committed (`results.created_at`, "
        "stamped in the transaction that commits the result); split into landed → registered "
        "(events, hashing and the frame row; a file renamed in is complete, no second look) and "
        "registered → committed (queue and scoring).",
        "- CPU ms/frame: user + system CPU of the watcher and worker processes (not PostgreSQL or "
        "Redis) during the phase, per frame.",
        "- load avg: the 1-minute load average before → after the phase (other work on the machine).",
        "",
        "| mode | phase | frames | offered frames/s | frames/s | ÷ ceiling | p50 s | p95 s | p99 s "
        "| landed→registered p50/p95 s | registered→committed p50/p95 s | CPU ms/frame | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in phases:
        offered = "burst" if p.offered_fps is None else f"{p.offered_fps:.1f}"
        lines.append(
            f"| {p.mode} | {p.phase} | {p.frames} | {offered} | {p.fps:.1f} | {p.fps / ceiling.fps:.0%} | "
            f"{p.latency[0]:.3f} | {p.latency[1]:.3f} | {p.latency[2]:.3f} | "
            f"{p.waiting[0]:.2f} / {p.waiting[1]:.2f} | {p.scoring[0]:.2f} / {p.scoring[1]:.2f} | "
            f"{p.cpu_ms:.1f} | {p.load} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop workers, drop the database
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a development run: small burst, a few seconds each"
    )
    parser.add_argument("--burst", type=int, help="frames in the burst (default 5000; --quick 200)")
    parser.add_argument("--steady-seconds", type=float, help="length of the steady phase")
    parser.add_argument("--device", default="auto", help="scoring device: auto | cpu | cuda | cuda:N")
    parser.add_argument("--modes", default="embedded,distributed", help="which pipelines to measure")
    parser.add_argument("--workers", default="1,2", help="celery worker processes to try (distributed)")
    parser.add_argument("--postgres", default=PG_SERVER, help="PostgreSQL server (a fresh database is made)")
    parser.add_argument("--redis", default=REDIS_URL, help="Redis database of the benchmark's own (flushed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the Markdown report")
    args = parser.parse_args(argv)

    budget = Budget.quick() if args.quick else Budget()
    if args.burst is not None:
        budget.burst = args.burst
    if args.steady_seconds is not None:
        budget.steady_seconds = args.steady_seconds
    modes = args.modes.split(",")
    device = str(resolve_device(args.device))
    cpu = device == "cpu"
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="inspector-throughput-") as tmp:
        work = Path(tmp)
        checkpoint = make_checkpoint(work / "model.pt")
        threads = sorted({1, cores}) if cpu else [torch.get_num_threads()]
        ceiling = measure_detector(checkpoint, decoded(make_frames(256)), device, budget, threads)
        rate = ceiling.fps / 2
        # On a CPU every scoring thread or process runs torch on one thread, and there are as
        # many of them as cores: torch's own threads wait for each other at every operation and
        # lose badly whenever another thread holds a core (the sweep's multi-thread rows under load).
        torch_threads = 1 if cpu else ceiling.threads
        # Each batch costs the pipeline a claim and a commit (an fsync on SQLite): the best of
        # the sweep's batches from 32 up at those threads (any size where the sweep has no such).
        sizes = [p for p in ceiling.sweep if p[0] == torch_threads and p[1] >= 32] or ceiling.sweep
        batch = max(sizes, key=lambda p: p[2])[1]

        workers = [int(w) for w in args.workers.split(",")] if "distributed" in modes else []
        n_warm = 2 * batch * max([1, *workers])
        frames = make_frames(n_warm + round(rate * budget.steady_seconds) + budget.burst, seed=1)

        common = {
            "INSPECTOR_MODEL_PATH": str(work / "model.pt"),
            "INSPECTOR_DEVICE": args.device,
            "INSPECTOR_WATCH__BATCH_SIZE": str(batch),
            "INSPECTOR_WATCH__SETTLE_SECONDS": str(budget.settle_seconds),
            "OMP_NUM_THREADS": str(torch_threads),
        }

        phases: list[Phase] = []
        if "embedded" in modes:
            run = work / "embedded"
            url = f"sqlite:///{run / 'data' / 'inspector.db'}"
            scorers = cores if cpu else 1
            settings = {
                "INSPECTOR_EXECUTOR": "inline",
                "INSPECTOR_DATA_DIR": str(run / "data"),
                "INSPECTOR_DATABASE_URL": url,
                "INSPECTOR_WATCH__SCORERS": str(scorers),
            }
            phases += measure_pipeline(
                f"embedded, {scorers} scorer(s) × {torch_threads} torch thread(s)",
                common | settings,
                url,
                run,
                frames,
                rate,
                budget,
                batch,
            )
        if "distributed" in modes:
            for n in workers:
                run = work / f"distributed-{n}"
                with fresh_postgres(args.postgres) as url, fresh_redis(args.redis) as broker:
                    settings = {
                        "INSPECTOR_EXECUTOR": "celery",
                        "INSPECTOR_DATA_DIR": str(run / "data"),
                        "INSPECTOR_DATABASE_URL": url,
                        "INSPECTOR_BROKER_URL": broker,
                        "INSPECTOR_QUEUE": QUEUE,
                    }
                    phases += measure_pipeline(
                        f"distributed, {n} worker(s) × {torch_threads} torch thread(s)",
                        common | settings,
                        url,
                        run,
                        frames,
                        rate,
                        budget,
                        batch,
                        workers=n,
                    )
        command = shlex.join(["python", "bench/throughput.py", *(argv if argv is not None else sys.argv[1:])])
        text = report(ceiling, phases, machine(), command, device, budget, batch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
