"""How long the default command trains: `inspector train --data DIR --out M`, nothing else.

Issue 18's limits: about 600 frames at 128 px in at most 15 minutes on 2 cores, 10 frames in
at most 3. Cases (frames written as 8-bit PNG files into ``--work``, then the real command
runs on the folder in a child process):

- ``tiles-600``: the first 600 magnetic-tile train-normal frames of the benchmark's split,
  resized to 128×128 (a surface: every candidate competes, the heavier path);
- ``tiles-10``: the first 10 of them;
- ``digits-600``: 600 noisy-MNIST frames of digit 3 (84×84, objects: glimpse candidates).

Wall time and CPU time (user + system, all the command's threads) of each; on a machine
shared with other jobs the wall time is inflated, and CPU time ÷ 2 is what two free cores
would take at best. One JSON per case under ``bench/results/training_time_runs/``
(a stored case is not run again); ``bench/results/training_time.md`` is rewritten after each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bench.default_path import train_command
from bench.magnetic_tile import protocol_split
from bench.mnist import one_class_task
from bench.paper_table import store
from bench.provenance import write_report

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "training_time_runs"
REPORT = RESULTS / "training_time.md"
LIMITS = {"tiles-600": 15.0, "tiles-10": 3.0, "digits-600": 15.0}  # minutes on 2 cores


def write_case(case: str, folder: Path, tiles: Path, mnist: Path) -> int:
    """The case's frames as PNG files in ``folder``; their number."""
    folder.mkdir(parents=True, exist_ok=True)
    if case.startswith("tiles"):
        count = int(case.split("-")[1])
        for path in protocol_split(tiles).train[:count]:
            grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(
                str(folder / f"{path.stem}.png"), cv2.resize(grey, (128, 128), interpolation=cv2.INTER_AREA)
            )
        return count
    frames = one_class_task(mnist, 3, train_size=600).train
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.round(frame[0] * 255).astype(np.uint8))
    return len(frames)


def render(runs: list[dict]) -> str:
    lines = [
        "# Training time of the default command (issue 18)",
        "",
        "`inspector train --data DIR --out M` with nothing else, in a child process "
        "(`bench/training_time.py`). "
        "The machine's 2 cores are shared with other jobs: wall time is inflated by them; CPU time is "
        "user + system of the command's threads, and CPU ÷ 2 is what two free cores would take at best.",
        "",
        "| case | frames | chosen | wall | CPU | CPU ÷ 2 | limit (2 cores) | within? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        wall, cpu = r["wall_seconds"] / 60, r["cpu_seconds"] / 60
        limit = LIMITS[r["case"]]
        verdict = (
            "yes" if wall <= limit else ("yes by CPU ÷ 2, not by wall" if cpu / 2 <= limit else "**no**")
        )
        lines.append(
            f"| {r['case']} | {r['frames']} | {r['chosen']} | {wall:.1f} min | {cpu:.1f} min | "
            f"{cpu / 2:.1f} min | {limit:.0f} min | {verdict} |"
        )
    lines += ["", "## Runs", ""]
    for r in runs:
        lines.append(
            f"- {r['case']}: commit {r['commit']}, {r['machine']}, load average {r['load_before']:.1f} "
            f"before and {r['load_after']:.1f} after, finished {r['finished_at']}, "
            f"command `{r['bench_command']}`"
        )
    return "\n".join(lines) + "\n"


def stored() -> list[dict]:
    order = list(LIMITS)
    runs = [json.loads(p.read_text()) for p in RUNS.glob("*.json")]
    return sorted(runs, key=lambda r: order.index(r["case"]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=Path, default=Path("../shared/data/magnetic-tile"))
    parser.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/inspector-bench/training_time"))
    parser.add_argument("--cases", default=",".join(LIMITS))
    args = parser.parse_args(argv)
    for case in args.cases.split(","):
        path = RUNS / f"{case}.json"
        if path.exists():
            continue
        folder = args.work / case
        frames = write_case(case, folder, args.tiles, args.mnist)
        load_before = os.getloadavg()[0]
        record = train_command(folder, args.work / f"{case}.pt")
        chosen = next((line for line in record["output"].splitlines() if line.startswith("chose")), "")
        result = {
            "case": case,
            "frames": frames,
            **record,
            "chosen": chosen.split(":")[0].removeprefix("chose ").strip(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU",
            "bench_command": shlex.join(["python", "-m", "bench.training_time", *sys.argv[1:]]),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        store(result, path)
        print(
            f"{case}: {result['wall_seconds'] / 60:.1f} min wall, {result['cpu_seconds'] / 60:.1f} min CPU",
            flush=True,
        )
        write_report(REPORT, render(stored()))
    write_report(REPORT, render(stored()))
    print(render(stored()))


if __name__ == "__main__":
    main()
