"""The default command, for the benchmarks that measure it: `inspector train --data DIR --out M`
with nothing else, as a user types it (issue 18: "every choice made without test labels, by
the default command").

``train_command`` runs the real command in a child process and measures its wall and CPU
time; ``train_arrays`` does what it does on frames already in memory (the noisy-MNIST
protocol renders float frames that files would round), with the command's own defaults read
from its click options, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.provenance import child_environment, git_commit
from inspector.config import FrameSpec
from inspector.detector import Checkpoint
from inspector.selection import frame_shape, train_default
from inspector.training import TrainOptions

INSPECTOR = Path(sys.executable).with_name("inspector")


def command_defaults() -> TrainOptions:
    """The training options `inspector train` uses when given none (its click defaults)."""
    from inspector.cli import train

    defaults = {p.name: p.default for p in train.params}
    names = ("epochs", "seed", "patience", "shift", "hflip", "gain", "min_epoch_frames")
    return TrainOptions(**{name: defaults[name] for name in names}, device="cpu")


def train_arrays(frames: np.ndarray, spec: FrameSpec) -> Checkpoint:
    """`inspector train` with no method on frames (N, C, H, W) read with ``spec``: the frame shape
    from theirs (a no-op when they are already within the pixel budget), then the label-free
    choice and its training, with the command's default options on the CPU."""
    shape = frame_shape([frames.shape[-2:]] * len(frames))
    if shape != tuple(frames.shape[-2:]):
        raise ValueError(f"frames {frames.shape[-2:]} would be resized to {shape}: write them as files")
    spec = dataclasses.replace(spec, image_size=shape[0], width=shape[1])
    return train_default(frames, spec, command_defaults())


def train_command(data: Path, out: Path, extra: Sequence[str] = (), env: dict | None = None) -> dict:
    """Run `inspector train --data DATA --out OUT [extra]`; its output, wall and CPU seconds."""
    command = [str(INSPECTOR), "train", "--data", str(data), "--out", str(out), *extra]
    commit = git_commit()  # the code the command runs: the tree as it starts
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=child_environment(env))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return {
        "command": " ".join(["inspector", "train", "--data", "DIR", "--out", "MODEL", *extra]),
        "commit": commit,
        "env": env or {},
        "output": done.stdout,
        "wall_seconds": round(time.time() - started, 1),
        "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
    }
