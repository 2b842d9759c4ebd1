"""The paper's second column in its spirit: hand poses from ~10 depth frames each, every method.

Data: ``../shared/data/depth/hand-sr305`` (Intel RealSense SR305, depth unit 0.125 mm): 8
frames of an open palm (``gesture/``) and 11 of other hand poses (``other/``). The paper's
test trained on 10 frames of one pigeon pose and scored others; this one does the same with
hands, in both directions, with every frame held out once.

Protocol (fixed before any run; see also the results file):

- Directions: ``palm`` (normal = the palm frames, anomalous = the other poses) and
  ``others`` (normal = the other poses, anomalous = the palm frames).
- Folds: the normal frames in the order of their frame number go to 4 interleaved folds
  (frame j to fold j mod 4), so neighbouring frames of the recording fall in different
  folds. For fold f a model trains on the normal frames outside f and scores the normal
  frames of f and every anomalous frame. ROC-AUC per fold; a direction's figure is the mean
  over its 4 folds (each normal frame compared with each anomalous frame exactly once, by a
  model that never saw it), then mean ± std over seeds.
- Frames: depth mode, near 200 mm, far 1500 mm, enclosed holes filled, 64×64.
- Every family: width 16, latent 16, batch 16 (the small-data recipe of docs/small-data.md;
  the same for the paper's VAEGAN and ours); augmentation shift 3 px and gain 5%; an epoch
  shows 256 (re-augmented) frames; the stopping rule of ``bench/convergence.py`` on the
  training's own held-out normals (2 of the 5–9 training frames). Peers: ``bench/peers.py``.

    python -m bench.depth_poses                  # every run not stored yet
    python -m bench.depth_poses --status
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from bench.convergence import StoppingRule
from bench.paper_table import RESULTS, RULE, SEEDS, fit_and_score, provenance, store
from bench.peers import PEERS
from inspector.config import FrameSpec
from inspector.frames import load_frame

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "depth" / "hand-sr305"
RUNS = RESULTS / "depth_poses_runs"
POSES = {"palm": "gesture", "others": "other"}  # direction → folder of its normal frames
FOLDS = 4
SPEC = FrameSpec(
    mode="depth", image_size=64, depth_unit_mm=0.125, near_mm=200.0, far_mm=1500.0, fill_holes=True
)
SMALL = {"width": 16, "latent_dim": 16, "batch_size": 16}
SETTINGS: dict[str, dict] = {
    "vaegan": SMALL,
    "vaegan+": {**SMALL, "lr": 1e-3, "gan_weight": 0.1},
    "vae": SMALL,
    "anogan": {**SMALL, "search_steps": 10},
}
AUGMENT = {"shift": 3, "gain": 0.05, "min_epoch_frames": 256}


class Run(NamedTuple):
    direction: str
    fold: int
    seed: int
    method: str

    def path(self, runs: Path = RUNS) -> Path:
        return runs / self.method / f"{self.direction}-fold{self.fold}-seed{self.seed}.json"


def plan() -> list[Run]:
    """Seed 0 of everything first (peers are deterministic: seed 0 only), then seeds 1 and 2."""
    methods = ("vaegan", "vaegan+", "vae", "anogan")
    first = [Run(d, f, 0, m) for m in (*methods, *PEERS) for d in POSES for f in range(FOLDS)]
    return first + [Run(d, f, s, m) for s in SEEDS[1:] for m in methods for d in POSES for f in range(FOLDS)]


def pose_files(folder: Path) -> list[Path]:
    """A pose's frame files in the order of their frame number."""
    paths = sorted(folder.glob("*.png"), key=lambda p: int(p.stem))
    if not paths:
        raise FileNotFoundError(f"no depth frames in {folder}")
    return paths


def fold_files(data: Path, direction: str, fold: int) -> tuple[list[Path], list[Path], np.ndarray]:
    """Training files, test files and test labels (1 = anomalous) of one fold."""
    normal = pose_files(data / POSES[direction])
    anomalous = pose_files(data / next(f for d, f in POSES.items() if d != direction))
    held = [j % FOLDS == fold for j in range(len(normal))]
    test = [p for p, h in zip(normal, held, strict=True) if h] + anomalous
    train = [p for p, h in zip(normal, held, strict=True) if not h]
    return train, test, np.repeat([0, 1], [sum(held), len(anomalous)])


def load_pose(folder: Path) -> np.ndarray:
    """A pose's frames (N, 1, 64, 64) in the order of their frame number."""
    return np.stack([load_frame(p, SPEC) for p in pose_files(folder)])


def fold_split(data: Path, direction: str, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training frames, test frames and test labels (1 = anomalous) of one fold."""
    train, test, labels = fold_files(data, direction, fold)
    return (
        np.stack([load_frame(p, SPEC) for p in train]),
        np.stack([load_frame(p, SPEC) for p in test]),
        labels,
    )


def run_job(data: Path, run: Run, rule: StoppingRule, device: str) -> dict:
    train, test, labels = fold_split(data, run.direction, run.fold)
    cpu, wall = time.process_time(), time.time()
    record = fit_and_score(
        run.method,
        train,
        test,
        SETTINGS.get(run.method, {}),
        SPEC,
        rule,
        run.seed,
        device,
        **(AUGMENT if run.method in SETTINGS else {}),
    )
    scores = record.pop("scores")
    return {
        **run._asdict(),
        "auc": {m: round(float(roc_auc_score(labels, s)), 4) for m, s in scores.items()},
        "scores": {m: np.round(s, 6).tolist() for m, s in scores.items()},
        "labels": labels.tolist(),
        **record,
        "train_frames": len(train),
        "settings": SETTINGS.get(run.method, {}),
        "augmentation": AUGMENT if run.method in SETTINGS else {},
        "frames": dataclasses.asdict(SPEC),
        "rule": dataclasses.asdict(rule),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "wall_seconds": round(time.time() - wall, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def pending(runs: Path = RUNS, methods: Sequence[str] = (), seeds: Sequence[int] = ()) -> Iterator[Run]:
    """The runs of the plan not stored yet, in plan order (only ``methods`` and ``seeds`` where given)."""
    for run in plan():
        chosen = (not methods or run.method in methods) and (not seeds or run.seed in seeds)
        if chosen and not run.path(runs).exists():
            yield run


def status(runs: Path = RUNS) -> str:
    left = list(pending(runs))
    methods = dict.fromkeys(r.method for r in left)
    lines = [f"{len(plan()) - len(left)} of {len(plan())} runs done."]
    lines += [f"- `{m}`: {sum(r.method == m for r in left)} runs left" for m in methods]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the hand-sr305 folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--methods", nargs="*", default=(), help="only these methods' runs")
    parser.add_argument("--seeds", nargs="*", type=int, default=(), help="only these seeds' runs")
    parser.add_argument("--status", action="store_true")
    args = parser.parse_args(argv)
    if args.status:
        print(status(args.runs))
        return
    torch.set_num_threads(args.threads)
    stamp = {
        **provenance(args.threads, args.device),
        "command": " ".join(["python -m bench.depth_poses", *sys.argv[1:]]),
    }
    for run in pending(args.runs, args.methods, args.seeds):
        result = {**run_job(args.data, run, RULE, args.device), **stamp}
        store(result, run.path(args.runs))
        print(f"{run}: {json.dumps(result['auc'])} ({result['cpu_seconds']:.0f} CPU s)", flush=True)


if __name__ == "__main__":
    main()
