"""What scoring a frame costs with each family, on a CPU: milliseconds per frame, one torch thread.

Each family's model scores the same random frames through ``Detector.score_arrays`` (the
path of the CLI, the watcher and the workers: maps included, copied back to numpy) in
batches of 16, the CPU default; the figure is the best of ``--repeats`` timed passes (the
machine is shared; the best pass is the least disturbed). Weights are untrained (training
changes the values, not the work), but every buffer scoring reads is full-size: the
memories hold ``bank_size`` (8192) patches, the most training keeps (and VIEWS_KEPT glimpses
where ``glimpse-pixels`` reads them), and the fixed-camera
VAEGAN's references are fitted. The paper's VAEGAN at 84×84 with Grad-CAM is the model of
``bench/throughput.py``'s ceiling: every row is also given as a multiple of it.

    python -m bench.scoring_cost          # writes bench/results/scoring_cost.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bench.magnetic_tile import Budget
from bench.provenance import git_commit
from inspector.config import FrameSpec
from inspector.detector import Checkpoint, Detector
from inspector.models import family_of, make_config
from inspector.models.memory import VIEWS_KEPT

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 16
# (method, frame shape, the family's settings, what the row stands for)
ROWS: list[tuple[str, tuple[int, int], dict, str]] = [
    ("vaegan-attn", (84, 84), {}, "the paper's VAEGAN + Grad-CAM, defaults: throughput.py's ceiling model"),
    (
        "vaegan-attn-z",
        (128, 128),
        Budget().model["vaegan-z"],
        "fixed-camera VAEGAN, the tile benchmark's settings",
    ),
    ("vaegan-attn+", (84, 84), {"width": 32}, "glimpse VAEGAN (the paper table's width)"),
    ("glimpse-max", (84, 84), {}, "glimpse memory, defaults (noisy MNIST's frames)"),
    ("glimpse-mean", (84, 84), {}, "glimpse memory, defaults"),
    ("glimpse-pixels", (84, 84), {}, "glimpse memory + 5-NN of the glimpse among 20 000 kept (the most)"),
    (
        "glimpse-max",
        (209, 313),
        {"backbone_size": 216},
        "glimpse memory at the objects' size: tiles on a canvas",
    ),
    (
        "glimpse-max",
        (222, 296),
        {"backbone_size": 256},
        "glimpse memory at the objects' size, the most (depth hands)",
    ),
    ("patch-max", (128, 128), {}, "patch memory, defaults, 128×128 frames"),
    ("patch-max", (272, 240), {}, "patch memory, defaults, the magnetic tiles' default shape"),
    ("patch-max", (222, 296), {}, "patch memory, defaults, SR305 depth frames' default shape"),
]


def checkpoint_for(method: str, shape: tuple[int, int], settings: dict) -> Checkpoint:
    """An untrained checkpoint of the method's family with every scoring buffer full-size."""
    family = family_of(method)
    spec = FrameSpec(image_size=shape[0], width=shape[1] if shape[1] != shape[0] else 0)
    config = make_config(family.name, {**settings, "image_size": shape[0], "channels": 1})
    torch.manual_seed(0)
    model = family.model(config).eval()
    frames = torch.rand(64, 1, *shape)
    model.fit_normal_statistics(frames[:8], frames)
    if hasattr(model, "memory"):
        model.memory.bank = torch.randn(config.bank_size, model.memory.bank.shape[1]) * 3
    if getattr(model, "frame_memory", None) is not None:
        model.frame_memory.views = torch.rand(VIEWS_KEPT, model.frame_memory.views.shape[1])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return Checkpoint(config, spec, state, {m: 0.0 for m in family.methods})


def time_row(method: str, shape: tuple[int, int], settings: dict, frames: int, repeats: int) -> float:
    """Milliseconds per frame: the best of ``repeats`` passes over ``frames`` frames."""
    detector = Detector(checkpoint_for(method, shape, settings), method, device="cpu", batch_size=BATCH)
    x = np.random.default_rng(0).random((frames, 1, *shape), dtype=np.float32)
    detector.score_arrays(x[:BATCH])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        detector.score_arrays(x)
        best = min(best, time.perf_counter() - started)
    return 1000 * best / frames


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    started = time.time()
    rows = []
    for method, shape, settings, what in ROWS:
        ms = time_row(method, shape, settings, args.frames, args.repeats)
        rows.append((method, shape, what, ms))
        print(f"{method} {shape}: {ms:.1f} ms/frame", flush=True)
    ceiling = rows[0][3]
    lines = [
        "# Scoring cost per family (CPU, one torch thread)",
        "",
        f"- **command**: `{shlex.join(['python', '-m', 'bench.scoring_cost', *sys.argv[1:]])}`",
        f"- **commit**: {git_commit()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- **machine**: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, one torch "
        f"thread; shared with other jobs (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after); "
        "no GPU was lent to this task",
        f"- **method**: `Detector.score_arrays`, {args.frames} random frames in batches of {BATCH}, best of "
        f"{args.repeats} passes; untrained weights, full-size buffers (memories of 8192 patches); "
        f"wall time {time.time() - started:.0f} s",
        "",
        "| method | frames | ms per frame | × the paper's VAEGAN | what |",
        "|---|---|---|---|---|",
    ]
    for method, shape, what, ms in rows:
        lines.append(f"| `{method}` | {shape[0]}×{shape[1]} | {ms:.1f} | {ms / ceiling:.1f}× | {what} |")
    lines += [
        "",
        "On two cores two scorer processes of one thread each score about twice the frames per second "
        "of one (bench/throughput.py); the per-frame CPU cost is what is compared here.",
        "",
    ]
    (RESULTS / "scoring_cost.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
