"""Operations benchmark (issue 20): ``python -m bench.operations`` -> bench/results/operations.md.

1. **Calibration page** — GET /calibration over 1k, 10k and 100k labelled frames (SQLite):
   cold (just after a new label, so the labelled scores are read again) and warm (labels
   unchanged), median of repeated loads; beside it the math alone against scikit-learn's
   ``roc_curve`` on the same scores, and the quadratic curve this replaced (at 1k).
2. **Prune** — ``retention.apply`` on archived frames with their maps: frames/s, beside
   ``find -delete`` of the same number of files (the file system's floor).
3. **Alert latency** — a real ``inspector watch`` (its dispatcher thread, cooldown 0) and a
   local webhook receiver: from a flagged result's commit, and from the frame's landing, to
   the receiver; beside it landed → committed (scoring) of the same frames.
4. **/metrics under a burst** — 5 000 frames land at once on a real watcher; meanwhile
   ``inspector serve``'s /metrics and the watcher's --metrics-port are scraped: latency per
   scrape, and the dashboard's CPU time per scrape.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_curve
from sqlalchemy import Connection

from bench.provenance import child_environment, git_commit, shared_machine
from bench.throughput import make_checkpoint, make_frames
from inspector.config import RetentionSettings, Settings
from inspector.maps import MAP_KINDS
from inspector.pipeline import retention
from inspector.pipeline.thresholds import Labelled, Operating
from inspector.store import migrate
from inspector.store.db import dispose_engines, get_engine, session_scope
from inspector.store.models import Frame, Model, Result, ResultMap, Review, utcnow
from inspector.web import create_app
from inspector.web.labelled import LabelledScores
from inspector.web.routes import calibration

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "operations.md"
INSPECTOR = str(Path(sys.executable).with_name("inspector"))
SIZE = 32  # the pruned frames' files and maps


def median_ms(
    run: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """The median time of a run in ms, by the wall clock (or this process's CPU time, every thread)."""
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return 1000 * statistics.median(times)


# --- 1. the calibration page -------------------------------------------------------------------


def seed_labels(settings: Settings, n: int, seed: int = 0) -> list[tuple[float, str]]:
    """n scored and labelled frames (30% anomalies, overlapping scores), two sources."""
    rng = np.random.default_rng(seed)
    anomalous = rng.random(n) < 0.3
    scores = rng.normal(anomalous * 1.0, 1.0)
    now = utcnow()
    migrate.upgrade(settings.db_url)
    with get_engine(settings.db_url).begin() as connection:
        common = dict(
            size_bytes=1, status="done", attempts=1, landed_at=now, registered_at=now, updated_at=now
        )
        connection.execute(
            Frame.__table__.insert(),
            [
                dict(id=i + 1, content_hash=f"{i:064x}", path=f"/in/{i}.png", source=f"cam{i % 3}", **common)
                for i in range(n)
            ],
        )
        insert_results(connection, "vaegan-attn", scores, now)
        connection.execute(
            Review.__table__.insert(),
            [
                dict(
                    frame_id=i + 1,
                    label="anomaly" if anomalous[i] else "normal",
                    reviewer="b",
                    created_at=now,
                )
                for i in range(n)
            ],
        )
    return [(float(s), "anomaly" if a else "normal") for s, a in zip(scores, anomalous, strict=True)]


def insert_results(connection: Connection, method: str, scores: Sequence[float], when: datetime) -> None:
    """Model v1 scoring with ``method`` (default threshold 0.5) and its result of frames 1…n."""
    model = dict(version="v1", path="m.pt", method=method, default_threshold=0.5, config={}, created_at=when)
    connection.execute(Model.__table__.insert(), [model])
    connection.execute(
        Result.__table__.insert(),
        [
            dict(
                id=i + 1,
                frame_id=i + 1,
                model_version="v1",
                method=method,
                score=float(score),
                threshold=0.5,
                is_anomaly=bool(score > 0.5),
                created_at=when,
            )
            for i, score in enumerate(scores)
        ],
    )


def quadratic_curve(samples: list[tuple[float, str]]) -> list[Operating]:
    """The curve before this issue: every distinct score, a pass over all samples each."""
    anomalies = sum(1 for _, label in samples if label == "anomaly")

    def point(threshold: float) -> Operating:
        tp = sum(1 for s, label in samples if label == "anomaly" and s > threshold)
        fp = sum(1 for s, label in samples if label == "normal" and s > threshold)
        return Operating(threshold, tp, fp, anomalies - tp, len(samples) - anomalies - fp)

    scores = sorted({s for s, _ in samples}, reverse=True)
    return [point(t) for t in [math.inf] + [math.nextafter(s, -math.inf) for s in scores]]


def measure_calibration(folder: Path, n: int, repeats: int) -> dict[str, object]:
    from fastapi.testclient import TestClient

    settings = Settings(data_dir=str(folder / f"labels-{n}"))
    samples = seed_labels(settings, n)
    client = TestClient(create_app(settings))
    assert client.get("/calibration").status_code == 200

    def first() -> None:  # as after the dashboard starts: nothing kept yet, every labelled score read
        calibration.LABELLED = LabelledScores()
        assert client.get("/calibration").status_code == 200

    def cold() -> None:
        with session_scope(settings.db_url) as session:  # a new label: the scores are read again
            session.add(Review(frame_id=1, label="normal", reviewer="bench"))
        assert client.get("/calibration").status_code == 200

    def started() -> tuple[float, float]:
        """A dashboard started for real (its start-up reads the scores ahead): seconds until the
        read-ahead is done, then the first page's ms."""
        calibration.LABELLED = LabelledScores()
        start = time.perf_counter()
        with TestClient(create_app(settings)) as fresh:
            while not calibration.LABELLED._kept:
                time.sleep(0.005)
            ahead = time.perf_counter() - start
            page = time.perf_counter()
            assert fresh.get("/calibration").status_code == 200
            return ahead, 1000 * (time.perf_counter() - page)

    truth = [label == "anomaly" for _, label in samples]
    read_ahead = [started() for _ in range(repeats)]
    scores = [s for s, _ in samples]
    row: dict[str, object] = {
        "n": n,
        "points": len(Labelled(samples).cuts),
        "first_ms": median_ms(first, repeats),
        "first_cpu_ms": median_ms(first, repeats, time.process_time),
        "started_ms": statistics.median(page for _, page in read_ahead),
        "read_ahead_s": statistics.median(ahead for ahead, _ in read_ahead),
        "cold_ms": median_ms(cold, repeats),
        "warm_ms": median_ms(lambda: client.get("/calibration"), repeats),
        "math_ms": median_ms(lambda: Labelled(samples).curve(400), repeats),
        "sklearn_ms": median_ms(lambda: roc_curve(truth, scores, drop_intermediate=False), repeats),
        "quadratic_ms": median_ms(lambda: quadratic_curve(samples), 1) if n <= 1000 else None,
    }
    dispose_engines()
    print(f"calibration {n}: {row}", flush=True)
    return row


# --- 2. prune ----------------------------------------------------------------------------------


def measure_prune(folder: Path, n: int) -> dict[str, float]:
    settings = Settings(
        data_dir=str(folder / "prune"),
        retention=RetentionSettings(max_age_days=30, keep_normal_fraction=0.01),
    )
    migrate.upgrade(settings.db_url)
    old = utcnow() - timedelta(days=60)
    plane = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (SIZE, SIZE), np.uint8))[
        1
    ].tobytes()
    archive = settings.data_path / "archive" / "old"
    archive.mkdir(parents=True)
    for i in range(n):
        (archive / f"f{i}.png").write_bytes(plane)
    with get_engine(settings.db_url).begin() as connection:
        common = dict(source="cam", size_bytes=len(plane), status="done", attempts=1)
        stamps = dict(landed_at=old, registered_at=old, updated_at=old)
        connection.execute(
            Frame.__table__.insert(),
            [
                dict(
                    id=i + 1,
                    content_hash=sha256(str(i).encode()).hexdigest(),  # spread, as real hashes are
                    path=f"/in/f{i}.png",
                    stored_path=f"archive/old/f{i}.png",
                )
                | common
                | stamps
                for i in range(n)
            ],
        )
        flagged = [0.9 if i % 20 == 0 else 0.1 for i in range(n)]  # 5% flagged: kept by the policy
        insert_results(connection, "vaegan-attn", flagged, old)
        connection.execute(
            ResultMap.__table__.insert(),
            [dict(result_id=i + 1, kind=kind, png=plane) for i in range(n) for kind in MAP_KINDS],
        )
    start = time.perf_counter()
    chosen = retention.plan(settings)
    planned = time.perf_counter() - start
    done = retention.apply(settings, chosen)
    total = time.perf_counter() - start
    # The floor: deleting as many files of the same size, and nothing else.
    peer = folder / "peer"
    peer.mkdir()
    for i in range(done.frames):
        (peer / f"f{i}.png").write_bytes(plane)
    start = time.perf_counter()
    subprocess.run(["find", str(peer), "-type", "f", "-delete"], check=True)
    floor = time.perf_counter() - start
    dispose_engines()
    result = {
        "frames": n,
        "pruned": done.frames,
        "plan_s": planned,
        "total_s": total,
        "per_s": done.frames / total,
        "find_per_s": done.frames / floor,
    }
    print(f"prune: {result}", flush=True)
    return result


# --- 3 and 4. a real watcher -------------------------------------------------------------------


def land(folder: Path, name: str, data: bytes) -> None:
    tmp = folder / f"{name}.png.tmp"
    tmp.write_bytes(data)
    tmp.rename(folder / f"{name}.png")


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=child_environment(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scored(settings: Settings) -> int:
    with session_scope(settings.db_url) as session:
        return session.query(Result).count()


def pipeline_env(settings: Settings, checkpoint: Path) -> dict[str, str]:
    return {
        "INSPECTOR_DATA_DIR": settings.data_dir,
        "INSPECTOR_MODEL_PATH": str(checkpoint),
        "INSPECTOR_DEVICE": "cpu",
        "INSPECTOR_WATCH__SETTLE_SECONDS": "0.2",
        "INSPECTOR_WATCH__RESCAN_SECONDS": "3600",
        "OMP_NUM_THREADS": "1",
    }


def prepare(folder: Path, checkpoint: Path, name: str) -> tuple[Settings, Path, dict[str, str]]:
    """A data folder whose source "cam" flags every frame: one frame scored, then its threshold set to -1."""
    settings = Settings(data_dir=str(folder / name))
    incoming = folder / f"{name}-incoming"
    incoming.mkdir()
    env = pipeline_env(settings, checkpoint)
    land(incoming, "first", make_frames(1, seed=99)[0])
    run = dict(env=child_environment(env), check=True, capture_output=True)
    subprocess.run([INSPECTOR, "watch", str(incoming), "--once", "--source", "cam"], **run)
    # Below every score (an untrained model scores some frames exactly 0): every frame flagged.
    subprocess.run([INSPECTOR, "threshold", "set", "--source", "cam", "--by", "bench", "--", "-1"], **run)
    return settings, incoming, env


def measure_alert_latency(folder: Path, checkpoint: Path, flags: int, spacing: float) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from tests.receivers import webhook_receiver

    settings, incoming, env = prepare(folder, checkpoint, "alerts")
    with webhook_receiver() as hook:
        env |= {
            "INSPECTOR_ALERTS__WEBHOOK_URL": hook.url,
            "INSPECTOR_ALERTS__COOLDOWN_SECONDS": "0",
            "INSPECTOR_ALERTS__DIGEST_ITEMS": "1000",  # every flag listed, to time each
        }
        command = [INSPECTOR, "watch", str(incoming), "--source", "cam"]
        with process(command, env, folder / "alerts-watch.log"):
            wait_until(lambda: _beats(settings), 60, "the watcher to start")
            for i, data in enumerate(make_frames(flags, seed=1)):
                land(incoming, f"a{i:04d}", data)
                time.sleep(spacing)

            def alerted() -> dict[int, float]:
                return {f["result_id"]: d.at for d in list(hook.deliveries) for f in d.json["frames"]}

            wait_until(lambda: len(alerted()) >= flags, 120, "every flag to be alerted")
        received = alerted()
        messages = len(hook.deliveries)
    with session_scope(settings.db_url) as session:
        rows = session.query(Result.id, Result.created_at, Frame.landed_at).join(Frame).all()

    def at(moment: datetime) -> float:  # the database's naive UTC times, as epoch seconds
        return moment.replace(tzinfo=UTC).timestamp()

    after_commit = [received[r.id] - at(r.created_at) for r in rows if r.id in received]
    after_landing = [received[r.id] - at(r.landed_at) for r in rows if r.id in received]
    scoring = [at(r.created_at) - at(r.landed_at) for r in rows if r.id in received]
    result = {
        "flags": flags,
        "alerted": len(received),
        "messages": messages,
        "commit_p50": float(np.percentile(after_commit, 50)),
        "commit_p95": float(np.percentile(after_commit, 95)),
        "commit_max": max(after_commit),
        "landing_p95": float(np.percentile(after_landing, 95)),
        "scoring_p95": float(np.percentile(scoring, 95)),
    }
    print(f"alert latency: {result}", flush=True)
    return result


def _beats(settings: Settings) -> bool:
    from inspector.store.models import Heartbeat

    with session_scope(settings.db_url) as session:
        return session.query(Heartbeat).filter(Heartbeat.stopped_at.is_(None)).count() > 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_scrapes(folder: Path, checkpoint: Path, burst: int, interval: float) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from tests.receivers import free_port

    settings, incoming, env = prepare(folder, checkpoint, "burst")
    dashboard, watcher_port = free_port(), free_port()
    serve = [INSPECTOR, "serve", "--port", str(dashboard)]
    watch = [INSPECTOR, "watch", str(incoming), "--source", "cam", "--metrics-port", str(watcher_port)]
    frames = make_frames(burst, seed=2)
    timings: dict[str, list[float]] = {"dashboard": [], "watcher": []}
    sizes: dict[str, int] = {}
    with process(serve, env, folder / "serve.log") as server, process(watch, env, folder / "burst-watch.log"):
        urls = {
            "dashboard": f"http://127.0.0.1:{dashboard}/metrics",
            "watcher": f"http://127.0.0.1:{watcher_port}/metrics",
        }
        wait_until(lambda: _answers(urls["dashboard"]) and _answers(urls["watcher"]), 60, "the endpoints")
        before, done = scored(settings), threading.Event()

        def scrape() -> None:  # from the first frame landing until the last is committed
            while not done.is_set():
                for name, url in urls.items():
                    start = time.perf_counter()
                    body = urllib.request.urlopen(url, timeout=30).read()
                    timings[name].append(time.perf_counter() - start)
                    sizes[name] = len(body)
                time.sleep(interval)

        cpu, started = cpu_seconds(server.pid), time.monotonic()
        scraper = threading.Thread(target=scrape)
        scraper.start()
        for i, data in enumerate(frames):
            land(incoming, f"b{i:05d}", data)
        try:
            wait_until(lambda: scored(settings) >= before + burst, 600, "the burst to drain")
        finally:
            done.set()
            scraper.join()
        drained = time.monotonic() - started
        cpu_per_scrape = (cpu_seconds(server.pid) - cpu) / len(timings["dashboard"])
    result = {
        "burst": burst,
        "drain_s": drained,
        "scrapes": len(timings["dashboard"]),
        "dashboard_p50_ms": 1000 * float(np.percentile(timings["dashboard"], 50)),
        "dashboard_p95_ms": 1000 * float(np.percentile(timings["dashboard"], 95)),
        "dashboard_cpu_ms": 1000 * cpu_per_scrape,
        "dashboard_bytes": sizes["dashboard"],
        "watcher_p50_ms": 1000 * float(np.percentile(timings["watcher"], 50)),
        "watcher_p95_ms": 1000 * float(np.percentile(timings["watcher"], 95)),
        "watcher_bytes": sizes["watcher"],
    }
    print(f"scrapes: {result}", flush=True)
    return result


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
    except OSError:
        return False
    return True


# --- the report --------------------------------------------------------------------------------


def _ms(value: object) -> str:
    return "–" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"  # type: ignore[operator]


def goals(rows: list[dict[str, object]], alerts: dict[str, float]) -> list[str]:
    """The issue's two goals against what was measured in this run."""
    largest = max(rows, key=lambda row: int(row["n"]))  # type: ignore[call-overload]
    after, unchanged, first, cpu, started, ahead = (
        float(largest[key])  # type: ignore[arg-type]
        for key in ("cold_ms", "warm_ms", "first_ms", "first_cpu_ms", "started_ms", "read_ahead_s")
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        f"- Calibration page < 200 ms at {largest['n']:,} labelled frames: "
        f"{verdict(max(after, unchanged, started) < 200)} after "
        f"a label ({after:.0f} ms), with labels unchanged ({unchanged:.0f} ms) and for the first load "
        f"after the dashboard starts ({started:.0f} ms; its start-up reads the scores ahead, done "
        f"{ahead:.2f} s after start); {verdict(first < 200)} with nothing kept ({first:.0f} ms, "
        f"{cpu:.0f} ms of CPU: every labelled score read, as for a page opened during the read-ahead).",
        f"- Alert p95 < 2 s after a flag: {verdict(alerts['commit_p95'] < 2)} "
        f"({alerts['commit_p95']:.2f} s).",
    ]


def report(
    command: str,
    wall: float,
    calibration_rows: list[dict[str, object]],
    prune: dict[str, float],
    alerts: dict[str, float],
    scrapes: dict[str, float],
) -> str:
    lines = [
        "# Operations (issue 20)",
        "",
        f"Command: `{command}`  ",
        f"Commit {git_commit()}, {time.strftime('%Y-%m-%d %H:%M %Z')}.  ",
        f"Machine: {shared_machine('SQLite')}.  ",
        f"Wall time: {wall:.0f} s.",
        "",
        *goals(calibration_rows, alerts),
        "",
        "## Calibration page (goal: < 200 ms at 100k labelled frames)",
        "",
        "GET /calibration in-process (TestClient), medians of repeated loads. *Nothing kept*: every",
        "labelled score read from SQL (a page opened while the start-up's read-ahead still runs).",
        "*After start-up*: a dashboard started for real (its start-up reads the first page's scores",
        "ahead, in a thread; *read ahead in*: how long after start that was done), then its first",
        "page. *After a",
        "label*: a label was added just before each load, so the frames labelled or scored since the",
        "last load are read. *Unchanged*: nothing read but the labels' stamp. *Its CPU*: the first",
        "load's CPU time (the machine is shared: its wall clock includes waiting for a core). *Math*:",
        "sorting and the drawn curve alone; scikit-learn's `roc_curve` on the same scores is the peer;",
        "the quadratic curve is the code this replaced.",
        "",
        "| labelled frames | distinct points | page, nothing kept | its CPU | page, after start-up "
        "| read ahead in | page, after a label | page, unchanged | math (ours) | scikit-learn roc_curve "
        "| quadratic curve (before) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in calibration_rows:
        lines.append(
            f"| {row['n']:,} | {row['points']:,} | {_ms(row['first_ms'])} | {_ms(row['first_cpu_ms'])} | "
            f"{_ms(row['started_ms'])} | {float(row['read_ahead_s']):.2f} s | {_ms(row['cold_ms'])} | "
            f"{_ms(row['warm_ms'])} | "
            f"{_ms(row['math_ms'])} | {_ms(row['sklearn_ms'])} | {_ms(row['quadratic_ms'])} |"
        )
    lines += [
        "",
        "## Prune",
        "",
        f"{prune['frames']:,} archived frames 60 days old (a {SIZE}×{SIZE} PNG file and",
        f"{len(MAP_KINDS)} stored maps each; 5% flagged), `max_age_days: 30`, flagged frames and a 1%",
        f"sample kept: {prune['pruned']:,} pruned in {prune['total_s']:.1f} s",
        f"(planning {prune['plan_s']:.2f} s): **{prune['per_s']:,.0f} frames/s**. The floor, `find -delete`",
        f"of as many files alone: {prune['find_per_s']:,.0f} files/s.",
        "",
        "## Alert latency (goal: p95 < 2 s after a flag)",
        "",
        "A real `inspector watch` (one inline scorer, the 84×84 default architecture, untrained; its",
        "dispatcher thread polling every 0.5 s, cooldown 0) and a local webhook receiver;",
        f"{alerts['flags']} frames, every one flagged, landing {alerts['spacing']:.1f} s apart: "
        f"{alerts['alerted']} alerted in {alerts['messages']} messages.",
        "",
        "| from | p50 | p95 | max |",
        "|---|---:|---:|---:|",
        f"| the flag's commit to the receiver | {alerts['commit_p50']:.2f} s | "
        f"**{alerts['commit_p95']:.2f} s** | {alerts['commit_max']:.2f} s |",
        f"| the frame's landing to the receiver | | {alerts['landing_p95']:.2f} s | |",
        f"| the frame's landing to its commit (scoring, for reference) | | {alerts['scoring_p95']:.2f} s | |",
        "",
        "## /metrics under a 5 000-frame burst",
        "",
        f"{scrapes['burst']:,} frames (84×84, the default architecture, untrained: as in throughput.md)",
        "land at once on a real `inspector watch --metrics-port` (one inline scorer) beside",
        f"`inspector serve`; from the first landing until the last commit ({scrapes['drain_s']:.0f} s) both",
        f"endpoints are scraped, {scrapes['interval']:.1f} s apart ({scrapes['scrapes']} scrapes each).",
        "CPU per scrape: the dashboard process's CPU time over the burst (it does nothing else) ÷ scrapes.",
        "",
        "| endpoint | p50 | p95 | CPU per scrape | body |",
        "|---|---:|---:|---:|---:|",
        f"| dashboard `/metrics` (every process group + SQL gauges) | {_ms(scrapes['dashboard_p50_ms'])} | "
        f"{_ms(scrapes['dashboard_p95_ms'])} | {_ms(scrapes['dashboard_cpu_ms'])} | "
        f"{scrapes['dashboard_bytes'] / 1000:.1f} kB |",
        f"| watcher `--metrics-port` (its group + SQL gauges) | {_ms(scrapes['watcher_p50_ms'])} | "
        f"{_ms(scrapes['watcher_p95_ms'])} | | {scrapes['watcher_bytes'] / 1000:.1f} kB |",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="labelled frames for the calibration page"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prune-frames", type=int, default=20000)
    parser.add_argument("--flags", type=int, default=40)
    parser.add_argument("--spacing", type=float, default=0.5, help="seconds between flagged frames")
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between scrapes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.monotonic()
    command = shlex.join(["python", "-m", "bench.operations", *(argv if argv is not None else sys.argv[1:])])
    folder = Path(tempfile.mkdtemp(prefix="inspector-ops-bench-"))
    try:
        rows = [measure_calibration(folder, int(n), args.repeats) for n in args.sizes.split(",")]
        prune = measure_prune(folder, args.prune_frames)
        checkpoint = folder / "model.pt"
        make_checkpoint(checkpoint)
        alerts = measure_alert_latency(folder, checkpoint, args.flags, args.spacing) | {
            "spacing": args.spacing
        }
        scrapes = measure_scrapes(folder, checkpoint, args.burst, args.interval) | {"interval": args.interval}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = report(command, time.monotonic() - started, rows, prune, alerts, scrapes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(
        json.dumps({"calibration": rows, "prune": prune, "alerts": alerts, "scrapes": scrapes}, default=str)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
