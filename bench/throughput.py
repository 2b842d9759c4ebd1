"""Throughput and latency of the detector alone and of the whole pipeline: ``make bench-throughput``.

Measured in one run on one machine (issue 7):

1. **Detector alone** — ``vaegan-attn`` scoring (reconstruction + Grad-CAM + score) of
   84×84 frames already in memory, swept over batch sizes and (on a CPU) over ways to spend
   the cores: one process with several torch threads, or one-thread processes side by side;
   the best is the *ceiling*.
2. **Pipeline, embedded** — ``inspector watch`` (inline executor, SQLite) on a folder
   that frames land in, first at a steady offered rate of half the ceiling, then as a
   burst. Frames are written under a ``.tmp`` name and renamed, as an uploader should.
3. **Pipeline, distributed** — the same with the celery executor: the machine's Redis (a
   dedicated database number, flushed before and after) and PostgreSQL (a fresh database,
   dropped after), with 1 and 2 worker processes.

Latency is landed → committed from the database: ``frames.landed_at`` (the file's mtime,
set when the uploader wrote it) to ``results.created_at`` (stamped in the transaction
that commits the result). Throughput of a phase is frames ÷ (last committed − first
landed). The ceiling's best point is measured again after each pipeline mode, and each
mode is also divided by the mean of the ceilings around it: a VM's speed drifts by ±10%
over the minutes of a run. The model is an untrained VAEGAN of the default architecture
(``VAEGANConfig`` defaults, image size 84): the work per frame is the same as for a trained
one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import cv2
import numpy as np
import torch
from sqlalchemy import func, select

from bench import cpu, profiling
from bench.provenance import git_commit
from bench.services import terminate
from inspector.config import FrameSpec
from inspector.detector import Checkpoint, Detector, resolve_device
from inspector.models.vaegan import VAEGAN, VAEGANConfig
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
MONITOR = "inspector-bench"  # application_name of the benchmark's own database connections


@dataclass
class Budget:
    """What sizes a run; the defaults are the published configuration."""

    burst: int = 5000
    steady_seconds: float = 30.0
    sweep_seconds: float = 4.0  # per (threads, batch size) point of the detector sweep
    confirm_seconds: float = 15.0  # the sweep's best point measured again: the ceiling
    claim_batch: int = 64  # the pipeline's watch.batch_size: frames claimed and committed together
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    gpu_batch_sizes: tuple[int, ...] = (64, 256, 1024)  # the sweep's on a GPU, which wants many
    settle_seconds: float = 0.5  # the shipped default (configs/default.yaml)
    timeout: float = 600.0  # the longest a phase may take to drain (--quick: 120)

    @classmethod
    def quick(cls) -> Budget:
        return cls(
            burst=200,
            steady_seconds=4.0,
            sweep_seconds=1.0,
            confirm_seconds=2.0,
            batch_sizes=(8, 64),
            gpu_batch_sizes=(64, 256),
            timeout=120.0,
        )


@dataclass
class Load:
    """The 1-minute load average around a measurement: other work on the machine."""

    before: float
    after: float = float("nan")

    def __str__(self) -> str:
        return f"{self.before:.1f} → {self.after:.1f}"


@dataclass(frozen=True)
class Layout:
    """How the cores are spent on scoring: processes side by side, each with torch threads."""

    processes: int
    threads: int

    def __str__(self) -> str:
        return f"{self.processes} process(es) × {self.threads} torch thread(s)"


@dataclass
class Point:
    layout: Layout
    batch_size: int
    fps: float
    cpu_ms: float  # user + system CPU of the scoring processes per frame

    def same_place(self, other: Point) -> bool:
        return (self.layout, self.batch_size) == (other.layout, other.batch_size)


@dataclass
class Ceiling:
    fps: float
    best: Point  # the sweep's best point
    load: Load
    sweep: list[Point] = field(default_factory=list)
    confirmed: Point | None = None  # the best point measured again: its frames/s is the ceiling


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
    cpu: dict[str, float]  # CPU ms per frame by component (process group), see measure_pipeline
    load: Load
    # The mean of the ceiling measured just before and just after this phase's mode: the
    # machine's speed drifts over the minutes a run takes (set by main; nan = not measured).
    ceiling_around: float = float("nan")
    # The detector alone's CPU ms per frame at the pipeline's layout and batch, measured just
    # before and just after this mode (set by main; nan = not measured).
    detector_ms: float = float("nan")
    profile: profiling.Profile | None = None  # where the CPU went (--profile)

    @property
    def cpu_ms(self) -> float:
        """CPU of every process of the pipeline per frame, the model's work included."""
        return sum(self.cpu.values())

    @property
    def own_ms(self) -> float:
        """The pipeline's own CPU per frame: all of it less what the detector alone spends."""
        return self.cpu_ms - self.detector_ms


# --- the model and the frames ------------------------------------------------------------------


def make_checkpoint(path: Path) -> Checkpoint:
    """An untrained VAEGAN of the default benchmark architecture at 84×84, saved to path."""
    torch.manual_seed(0)
    config = VAEGANConfig(image_size=IMAGE_SIZE)
    model = VAEGAN(config).eval()
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


def _score_point(checkpoint: Path, device: str, threads: int, batch_size: int, seconds: float) -> None:
    """One process of a sweep point (``--point``): warm up, say ready, wait for go, score for
    ``seconds`` and print the frames scored, the time taken and the CPU time spent, as JSON."""
    torch.set_num_threads(threads)
    detector = Detector.load(checkpoint, method="vaegan-attn", device=device, batch_size=batch_size)
    chunk = decoded(make_frames(max(batch_size, 256 // batch_size * batch_size)))
    detector.score_arrays(chunk[:batch_size])  # warm-up
    print("ready", flush=True)
    sys.stdin.readline()
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        detector.score_arrays(chunk)
        done += len(chunk)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"frames": done, "seconds": elapsed, "cpu": cpu}), flush=True)


def measure_point(checkpoint: Path, device: str, layout: Layout, batch_size: int, seconds: float) -> Point:
    """Frames/s of ``layout.processes`` scoring processes started together, summed, and their
    CPU per frame."""
    command = [sys.executable, "-m", "bench.throughput", "--point", str(checkpoint), device]
    command += [str(layout.threads), str(batch_size), str(seconds)]
    env = os.environ | {"OMP_NUM_THREADS": str(layout.threads)}
    children = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(layout.processes)
    ]
    try:
        for child in children:  # a barrier: every process loaded and warm before any starts
            assert child.stdout is not None and child.stdout.readline().strip() == "ready", child.args
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        measured = [json.loads(child.communicate(timeout=seconds + 120)[0]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    if any(child.returncode for child in children):
        raise RuntimeError(f"a sweep process failed: {[child.returncode for child in children]}")
    frames = sum(m["frames"] for m in measured)
    fps = frames / max(m["seconds"] for m in measured)
    return Point(layout, batch_size, fps, 1000 * sum(m["cpu"] for m in measured) / frames)


def sweep_layouts(cpu: bool, cores: int) -> list[Layout]:
    """On a CPU: one process on one core, one process on all cores, one one-thread process per
    core (what the pipeline runs). On a GPU one process feeds it."""
    if not cpu:
        return [Layout(1, torch.get_num_threads())]
    return list(dict.fromkeys([Layout(1, 1), Layout(1, cores), Layout(cores, 1)]))


def measure_detector(
    checkpoint: Path, device: str, batch_sizes: Sequence[int], budget: Budget, layouts: Sequence[Layout]
) -> Ceiling:
    """Frames/s of Detector.score_arrays for each (layout, batch size); the ceiling is the best
    point measured again for ``confirm_seconds``: the best of several short noisy measurements
    is biased upwards (each sweep point is short), the same point measured again is not."""
    load = Load(os.getloadavg()[0])
    sweep = []
    for layout in layouts:
        for batch_size in batch_sizes:
            point = measure_point(checkpoint, device, layout, batch_size, budget.sweep_seconds)
            sweep.append(point)
            print(
                f"detector: {layout}, batch {batch_size}: {point.fps:.1f} frames/s, "
                f"{point.cpu_ms:.2f} CPU ms/frame",
                flush=True,
            )
    best = max(sweep, key=lambda point: point.fps)
    confirmed = confirm(checkpoint, device, best, budget)
    load.after = os.getloadavg()[0]
    return Ceiling(fps=confirmed.fps, best=best, load=load, sweep=sweep, confirmed=confirmed)


def confirm(checkpoint: Path, device: str, point: Point, budget: Budget, what: str = "best point") -> Point:
    """A sweep point measured again for ``confirm_seconds`` (the best one: the ceiling)."""
    again = measure_point(checkpoint, device, point.layout, point.batch_size, budget.confirm_seconds)
    print(
        f"detector: {what} again for {budget.confirm_seconds:g} s: {again.fps:.1f} frames/s, "
        f"{again.cpu_ms:.2f} CPU ms/frame",
        flush=True,
    )
    return again


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


class Services:
    """The PostgreSQL and Redis processes a distributed run uses, where they run on this machine.

    PostgreSQL's backends serving the run's database are the run's own; its other processes
    (postmaster, WAL writer, checkpointer, background writer, autovacuum) and the Redis
    server serve every user of the machine's services: their CPU over a phase is counted
    whole, and said to be shared.
    """

    def __init__(self, url: str, broker: str):
        import psycopg
        import redis

        self._db = psycopg.connect(
            url.replace("+psycopg", ""), autocommit=True, application_name=MONITOR, connect_timeout=5
        )
        own = self._db.execute("SELECT pg_backend_pid()").fetchone()
        stat = Path(f"/proc/{own[0]}/stat") if own else None
        local = stat is not None and cpu.command_name(own[0]) == "postgres"
        self.postgres_here = local
        self._postmaster = int(stat.read_text().rsplit(")", 1)[1].split()[1]) if local and stat else 0
        pid = int(redis.Redis.from_url(broker).info("server")["process_id"])
        self._redis = pid if cpu.command_name(pid) == "redis-server" else 0

    def _pids(self, query: str) -> list[int]:
        return [row[0] for row in self._db.execute(query)] if self.postgres_here else []

    def backends(self) -> list[int]:
        """PostgreSQL backends connected to the run's database, the benchmark's own left out."""
        return self._pids(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            f"AND backend_type = 'client backend' AND application_name <> '{MONITOR}'"
        )

    def service(self) -> list[int]:
        """PostgreSQL's processes that serve no one connection: postmaster and background workers."""
        shared = self._pids("SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'")
        return shared + ([self._postmaster] if self._postmaster else [])

    def redis(self) -> list[int]:
        return [self._redis] if self._redis else []

    def close(self) -> None:
        self._db.close()


def _wait_for(
    url: str,
    folder: Path,
    prefix: str,
    n: int,
    timeout: float,
    alive: Sequence[subprocess.Popen],
    meter: cpu.Meter | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if meter is not None:
            meter.sample()  # processes that leave meanwhile (a database connection) keep their CPU
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
    groups: dict[str, cpu.Group],
    profile: Profiled | None = None,
) -> Phase:
    """Land the frames and wait for their results; with ``profile``, py-spy samples the
    pipeline's processes meanwhile."""
    recorder = profiling.Recorder(profile.pids, profile.out / phase) if profile else None
    load, meter = Load(os.getloadavg()[0]), cpu.Meter(groups)
    meter.start()
    offered = write_frames(folder, phase, frames, rate)
    _wait_for(url, folder, phase, len(frames), timeout, alive, meter)
    spent, load.after = meter.stop(), os.getloadavg()[0]
    raw = recorder.stop() if recorder else None
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
        cpu={name: 1000 * seconds / len(frames) for name, seconds in spent.items()},
        load=load,
    )
    if profile and raw is not None:
        result.profile = profiling.summarise(raw, profile.role, result.cpu)
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


@dataclass
class Profiled:
    """py-spy on a mode's processes (the watcher, the Celery workers; their children too)."""

    pids: list[int]
    role: Callable[[int], str]  # the role of a process: watcher, scorers or workers
    out: Path


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
    scorers: int = 1,
    services: Services | None = None,
    profile: Path | None = None,
) -> list[Phase]:
    """Start a watcher (and workers), warm up, then the steady phase and the burst (with
    ``profile``, sampled by py-spy, the raw stacks kept in that folder).

    CPU is counted by process group: the watcher; its scorer processes (embedded) or the
    Celery workers with their pool processes (distributed); and the ``services`` (distributed:
    PostgreSQL's backends for the run's database, the rest of PostgreSQL and Redis, shared).
    """
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
    watcher = _start([*INSPECTOR, "watch", str(folder)], env, workdir / "watcher.log")
    roots = [p.pid for p in processes]
    processes.append(watcher)
    groups: dict[str, cpu.Group] = {"watcher": lambda: [watcher.pid]}
    if workers:
        groups["workers"] = lambda: roots + list(cpu.descendants(roots))
    else:
        groups["scorers"] = lambda: cpu.descendants([watcher.pid])
    if services is not None:
        groups |= {
            "PostgreSQL backends": services.backends,
            "PostgreSQL service (shared)": services.service,
            "Redis (shared)": services.redis,
        }
    scoring = "workers" if workers else "scorers"
    profiled = None
    if profile:
        profiled = Profiled(
            [watcher.pid, *roots],
            lambda pid: "watcher" if pid == watcher.pid else scoring,
            profile / workdir.name,
        )
    try:
        steady_n = max(1, round(rate * budget.steady_seconds))
        # The model loads on the first batch in each scoring process: two batches each first.
        n_warm = 2 * batch_size * max(1, workers, scorers)
        warm, steady, burst = frames[:n_warm], frames[n_warm : n_warm + steady_n], frames[n_warm + steady_n :]
        write_frames(folder, "warm", warm, None)
        _wait_for(url, folder, "warm", len(warm), budget.timeout, processes)
        return [
            run_phase(mode, "steady", url, folder, steady, rate, budget.timeout, processes, groups, profiled),
            run_phase(
                mode,
                "burst",
                url,
                folder,
                burst[: budget.burst],
                None,
                budget.timeout,
                processes,
                groups,
                profiled,
            ),
        ]
    finally:
        terminate(processes)
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
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "gpu": gpu,
        "torch": torch.__version__,
        "commit": git_commit(),
        "python": platform.python_version(),
    }


def report(
    ceiling: Ceiling,
    rechecks: Sequence[float],
    phases: Sequence[Phase],
    info: dict[str, str],
    command: str,
    device: str,
    budget: Budget,
    batch: int,
    inference: int,
) -> str:
    lines = [
        "# Throughput and latency (issue 7)",
        "",
        f"Command: `{command}`  ",
        f"Commit {info['commit']}, {time.strftime('%Y-%m-%d %H:%M %Z')}.  ",
        f"Machine: {info['cores']} cores, {info['cpu']}; GPU: {info['gpu']}; torch {info['torch']}, "
        f"Python {info['python']}; scoring device: {device}.",
        "",
        "Model: an *untrained* VAEGAN of the default architecture (`VAEGANConfig` defaults, 84×84, "
        "width 32, latent 64), method `vaegan-attn`. Training changes the weights, not the work per "
        "frame, so throughput is that of a trained model; the verdicts are meaningless.",
        "",
        "## Detector alone (the ceiling)",
        "",
        "| processes × torch threads | batch | frames/s |",
        "|---|---:|---:|",
        *(
            f"| {p.layout.processes} × {p.layout.threads} | {p.batch_size} | {p.fps:.1f} |"
            for p in ceiling.sweep
        ),
        "",
        f"Ceiling: **{ceiling.fps:.1f} frames/s**: the sweep's best point ({ceiling.best.layout}, "
        f"batch {ceiling.best.batch_size}) measured again for {budget.confirm_seconds:g} s (the best of "
        f"the short sweep points is biased upwards); load average {ceiling.load}. "
        "`Detector.score_arrays` on frames already in memory, in processes started together "
        "(frames/s summed over them): reconstruction, Grad-CAM and score, with the arrays copied "
        "back to the host.",
        "",
        "The same point measured again after each pipeline mode (the machine's speed drifts): "
        + (", ".join(f"{fps:.1f}" for fps in rechecks) or "not measured")
        + " frames/s. The pipeline table divides each mode's frames/s both by the ceiling above "
        "and by the mean of the measurements just before and just after that mode.",
        "",
        "## Pipeline",
        "",
        f"Watch settings: {batch} frames claimed and committed together (`watch.batch_size`), {inference} "
        "per forward pass (`inference_batch`: the sweep's best at the pipeline's layout), "
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
        "- own CPU ms/frame: the pipeline's own CPU per frame (the next table): the CPU of all its "
        "processes less what the detector alone spends on the same frames.",
        "- load avg: the 1-minute load average before → after the phase (other work on the machine).",
        "",
        "| mode | phase | frames | offered frames/s | frames/s | ÷ ceiling | ÷ ceiling around it | p50 s "
        "| p95 s | p99 s | landed→registered p50/p95 s | registered→committed p50/p95 s | own CPU ms/frame "
        "| load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in phases:
        offered = "burst" if p.offered_fps is None else f"{p.offered_fps:.1f}"
        lines.append(
            f"| {p.mode} | {p.phase} | {p.frames} | {offered} | {p.fps:.1f} | {p.fps / ceiling.fps:.0%} | "
            f"{p.fps / p.ceiling_around:.0%} ({p.ceiling_around:.1f}) | "
            f"{p.latency[0]:.3f} | {p.latency[1]:.3f} | {p.latency[2]:.3f} | "
            f"{p.waiting[0]:.2f} / {p.waiting[1]:.2f} | {p.scoring[0]:.2f} / {p.scoring[1]:.2f} | "
            f"{p.own_ms:.2f} | {p.load} |"
        )
    return "\n".join(lines + cpu_section(phases, ceiling, budget) + profile_section(phases)) + "\n"


def cpu_section(phases: Sequence[Phase], ceiling: Ceiling, budget: Budget) -> list[str]:
    """The pipeline's CPU per frame by process group, and its own share beyond the detector's."""
    groups = list(dict.fromkeys(name for p in phases for name in p.cpu))
    confirmed = f"{ceiling.confirmed.cpu_ms:.3f}" if ceiling.confirmed else "not measured"
    lines = [
        "",
        "## CPU per frame",
        "",
        "User + system CPU of each group of the pipeline's processes during the phase, from "
        "`/proc/<pid>/stat`, per frame; processes that start or end during the phase (a database "
        "connection) are counted for the time they lived in it. *all* is their sum; *detector alone* "
        "is the CPU per frame of `Detector.score_arrays` at the pipeline's layout and frames per "
        f"forward pass on the same frames, measured for {budget.confirm_seconds:g} s just before and "
        "just after the mode (the mean); *own* is all less the detector alone: what the pipeline "
        "spends beyond the model (watching, hashing, registering, claiming, decoding, maps, SQL, "
        "moves). CPU time, not wall time, so it means the same on a loaded machine (other work "
        "slows the clock, not the instructions a frame costs; contention for caches still raises "
        f"it somewhat). The best sweep point's own CPU per frame when the ceiling was set: {confirmed} ms.",
        "",
        "- PostgreSQL backends: the backends connected to the run's fresh database (the "
        "benchmark's own connections left out). PostgreSQL service (shared): its postmaster, WAL "
        "writer, checkpointer, background writer and autovacuum, whole: they also serve every "
        "other user of the machine's PostgreSQL. Redis (shared): the whole Redis server, which "
        "other users of the machine share too. Both are counted in *all* and *own*.",
        "",
        "| mode | phase | " + " | ".join(groups) + " | all | detector alone | **own** |",
        "|---|---|" + "---:|" * (len(groups) + 3),
    ]
    for p in phases:
        cells = " | ".join(f"{p.cpu[g]:.3f}" if g in p.cpu else "—" for g in groups)
        lines.append(
            f"| {p.mode} | {p.phase} | {cells} | {p.cpu_ms:.3f} | {p.detector_ms:.3f} | **{p.own_ms:.3f}** |"
        )
    return lines


def profile_section(phases: Sequence[Phase]) -> list[str]:
    """Where the CPU went (``--profile``), per profiled phase."""
    profiled = [p for p in phases if p.profile is not None]
    if not profiled:
        return []
    lines = [
        "",
        "## Profile (py-spy)",
        "",
        f"py-spy attached to the pipeline's processes (children included) for the phase, "
        f"{profiling.RATE} samples a second of the threads not asleep. py-spy counts a thread "
        "waiting for a core (or in an fsync) as busy, so its samples are shares, not CPU time: a "
        "category's CPU ms per frame is its share of a role's samples times the role's CPU per "
        "frame measured from /proc (the table above). A stack counts for the category of the "
        "product's frame nearest its leaf that names one (decoding inside the scoring step is "
        "decoding); stacks naming none are the machinery around the work.",
    ]
    for p in profiled:
        assert p.profile is not None
        lines += ["", f"### {p.mode}, {p.phase}", "", *profiling.table(p.profile)]
    return lines


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
    parser.add_argument(
        "--scorers", help="scoring processes to try (embedded; default: one per core on a CPU, 1 on a GPU)"
    )
    parser.add_argument("--postgres", default=PG_SERVER, help="PostgreSQL server (a fresh database is made)")
    parser.add_argument("--redis", default=REDIS_URL, help="Redis database of the benchmark's own (flushed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the Markdown report")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the pipeline's processes with py-spy in each phase, the raw stacks kept in DIR "
        "(needs py-spy and ptrace rights)",
    )
    parser.add_argument("--point", nargs=5, help=argparse.SUPPRESS)  # one process of a sweep point
    args = parser.parse_args(argv)
    if args.point:
        path, device, threads, batch_size, seconds = args.point
        _score_point(Path(path), device, int(threads), int(batch_size), float(seconds))
        return 0

    budget = Budget.quick() if args.quick else Budget()
    if args.burst is not None:
        budget.burst = args.burst
    if args.steady_seconds is not None:
        budget.steady_seconds = args.steady_seconds
    modes = args.modes.split(",")
    device = str(resolve_device(args.device))
    on_cpu = device == "cpu"
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="inspector-throughput-") as tmp:
        work = Path(tmp)
        make_checkpoint(work / "model.pt")
        batch_sizes = budget.batch_sizes if on_cpu else budget.gpu_batch_sizes
        ceiling = measure_detector(
            work / "model.pt", device, batch_sizes, budget, sweep_layouts(on_cpu, cores)
        )
        rate = ceiling.fps / 2
        # On a CPU every scorer (embedded scoring process or celery worker) runs torch on one
        # thread, one per core: torch's own threads wait for each other at every operation and
        # lose whenever another process holds a core. Frames per forward pass: the sweep's best
        # for that layout; frames per claim and commit (an fsync on SQLite): budget.claim_batch.
        layout = Layout(cores, 1) if on_cpu else ceiling.best.layout
        torch_threads = layout.threads
        at_layout = max((p for p in ceiling.sweep if p.layout == layout), key=lambda p: p.fps)
        inference = at_layout.batch_size
        batch = budget.claim_batch

        def detector_cost(again: Point) -> float:
            """CPU ms per frame of the detector alone where the pipeline scores (its layout and
            frames per forward pass): ``again`` if it was measured there, else measured now."""
            if again.same_place(at_layout):
                return again.cpu_ms
            return confirm(work / "model.pt", device, at_layout, budget, "the pipeline's point").cpu_ms

        workers = [int(w) for w in args.workers.split(",")] if "distributed" in modes else []
        scorer_counts = (
            [int(n) for n in args.scorers.split(",")] if args.scorers else [cores if on_cpu else 1]
        )
        if "embedded" not in modes:
            scorer_counts = []
        n_warm = 2 * batch * max([1, *workers, *scorer_counts])
        frames = make_frames(n_warm + round(rate * budget.steady_seconds) + budget.burst, seed=1)

        common = {
            "INSPECTOR_MODEL_PATH": str(work / "model.pt"),
            "INSPECTOR_DEVICE": args.device,
            "INSPECTOR_WATCH__BATCH_SIZE": str(batch),
            "INSPECTOR_INFERENCE_BATCH": str(inference),
            "INSPECTOR_WATCH__SETTLE_SECONDS": str(budget.settle_seconds),
            "OMP_NUM_THREADS": str(torch_threads),
        }

        phases: list[Phase] = []
        rechecks: list[float] = []  # the ceiling measured again after each mode
        assert ceiling.confirmed is not None
        costs = [detector_cost(ceiling.confirmed)]  # the detector's CPU per frame, before and after each mode

        def measured(
            mode: str,
            settings: dict[str, str],
            url: str,
            run: Path,
            workers: int = 0,
            scorers: int = 1,
            services: Services | None = None,
        ) -> list[Phase]:
            """One mode's phases, each with the mean of the ceilings (and of the detector's CPU per
            frame) measured just before and after it."""
            mode_phases = measure_pipeline(
                mode,
                common | settings,
                url,
                run,
                frames,
                rate,
                budget,
                batch,
                workers,
                scorers,
                services,
                args.profile,
            )
            before = rechecks[-1] if rechecks else ceiling.fps
            again = confirm(work / "model.pt", device, ceiling.best, budget)
            rechecks.append(again.fps)
            costs.append(detector_cost(again))
            for phase in mode_phases:
                phase.ceiling_around = (before + rechecks[-1]) / 2
                phase.detector_ms = (costs[-2] + costs[-1]) / 2
            return mode_phases

        if "embedded" in modes:
            for scorers in scorer_counts:
                run = work / f"embedded-{scorers}"
                url = f"sqlite:///{run / 'data' / 'inspector.db'}"
                settings = {
                    "INSPECTOR_EXECUTOR": "inline",
                    "INSPECTOR_DATA_DIR": str(run / "data"),
                    "INSPECTOR_DATABASE_URL": url,
                    "INSPECTOR_WATCH__SCORERS": str(scorers),
                }
                mode = f"embedded, {scorers} scorer(s) × {torch_threads} torch thread(s)"
                phases += measured(mode, settings, url, run, scorers=scorers)
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
                    mode = f"distributed, {n} worker(s) × {torch_threads} torch thread(s)"
                    services = Services(url, broker)
                    try:  # the benchmark's own connections are named, so they are not counted as the run's
                        phases += measured(
                            mode, settings, f"{url}?application_name={MONITOR}", run, n, 1, services
                        )
                    finally:
                        services.close()
        command = shlex.join(
            ["python", "-m", "bench.throughput", *(argv if argv is not None else sys.argv[1:])]
        )
        text = report(ceiling, rechecks, phases, machine(), command, device, budget, batch, inference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
