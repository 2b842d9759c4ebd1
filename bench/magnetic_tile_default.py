"""The magnetic tiles with the default command: `inspector train --data <634 normals> --out M`, then score.

Protocol: ../shared/benchmarks/magnetic-tile.md (the fixed split; pixel metrics at 128×128
against the masks resized there). The 634 train-normal files are put in a folder (links) and
the real command trains on it, as a user would, with nothing else: it chooses the frame
shape, the family and its scoring method from the normal frames alone (issue 18). The test
frames are then read with the checkpoint's frame settings and scored with its chosen method,
as `inspector score` does; the anomaly maps are resized to 128×128 for the pixel metrics.
The classic peers (``bench/peers.py``) train on the same 634 frames at the protocol's 128×128
and score the same test frames, in the same run (image level: they make no map).

Resumable: the trained model and the training record stay in ``--work``; a rerun scores it
again without training. Results: ``bench/results/magnetic_tile_default.md`` and ``.json``.

    python -m bench.magnetic_tile_default --data ../shared/data/magnetic-tile

Goal (issue 18): image ROC-AUC ≥ 0.95 and pooled pixel ROC-AUC ≥ 0.85.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from bench.default_path import train_command
from bench.magnetic_tile import (
    CLASSES,
    METRIC_SIZE,
    image_aurocs,
    load_images,
    load_masks,
    pixel_aurocs,
    protocol_split,
    to_metric_size,
)
from bench.paper_table import store
from bench.peers import PEERS
from bench.provenance import git_commit, write_report
from inspector.config import FrameSpec
from inspector.detector import Detector

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_IMAGE, GOAL_PIXEL = 0.95, 0.85


def train_once(data: Path, work: Path) -> dict:
    """The default command on the train-normal files (a stored record is reused)."""
    record_path = work / "training.json"
    model = work / "model.pt"
    if record_path.exists() and model.exists():
        return json.loads(record_path.read_text())
    folder = work / "train-normal"
    folder.mkdir(parents=True, exist_ok=True)
    for path in protocol_split(data).train:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    record = train_command(folder, model)
    store(record, record_path)
    return record


def run(data: Path, work: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    commit = git_commit()
    training = train_once(data, work)
    split = protocol_split(data)
    classes = np.array(split.classes)
    detector = Detector.load(work / "model.pt", device="cpu")
    checkpoint = detector.checkpoint
    started, cpu = time.time(), time.process_time()
    test = load_images(split.test, checkpoint.frame_spec)
    detections = detector.score_arrays(test)
    score_wall, score_cpu = time.time() - started, time.process_time() - cpu
    scores = np.array([d.score for d in detections])
    maps = to_metric_size(np.stack([d.anomaly_map for d in detections]))
    masks = load_masks(split.test)
    protocol = FrameSpec(image_size=METRIC_SIZE)
    train_128, test_128 = load_images(split.train, protocol), load_images(split.test, protocol)
    peers = {name: image_aurocs(peer(train_128, test_128), classes) for name, peer in PEERS.items()}
    return {
        "training": training,
        "family": checkpoint.family.name,
        "method": detector.method,
        "frame_spec": checkpoint.frame_spec.__dict__,
        "selection": checkpoint.metadata["selection"],
        "image_auroc": image_aurocs(scores, classes),
        "pixel_auroc": pixel_aurocs(maps, masks, classes),
        "peers": peers,
        "scores": scores.round(6).tolist(),
        "score_wall_seconds": round(score_wall, 1),
        "score_cpu_seconds": round(score_cpu, 1),
        "test_frames": len(test),
        "commit": commit,
        "host": platform.node(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
        f"{threads} torch threads for scoring; no GPU",
        "command": shlex.join(["python", "-m", "bench.magnetic_tile_default", *sys.argv[1:]]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render(result: dict) -> str:
    image, pixel = result["image_auroc"], result["pixel_auroc"]
    met = image["overall"] >= GOAL_IMAGE and pixel["overall"] >= GOAL_PIXEL
    training, spec = result["training"], result["frame_spec"]
    selection = result["selection"]
    lines = [
        "# Magnetic tiles with the default command (issue 18)",
        "",
        f"- **command**: `{result['command']}`, which runs `{training['command']}` on the 634 train-normal "
        "files (links in a folder) and scores the test frames with the checkpoint's frame settings and "
        "chosen method, as `inspector score` does",
        f"- **commit**: {result['commit']} (trained at {training['commit']}); host {result['host']}; "
        f"{result['machine']}; finished {result['finished_at']}",
        f"- **training**: {training['wall_seconds'] / 60:.1f} min wall, "
        f"{training['cpu_seconds'] / 60:.1f} min CPU (the command, all its threads)",
        f"- **scoring** {result['test_frames']} test frames: {result['score_wall_seconds']:.0f} s wall, "
        f"{result['score_cpu_seconds']:.0f} s CPU "
        f"({1000 * result['score_cpu_seconds'] / result['test_frames']:.0f} ms CPU per frame)",
        f"- **chosen** (label-free): {result['family']}, method `{result['method']}`, frames "
        f"{spec['image_size']}×{spec['width'] or spec['image_size']} px; validation estimate "
        f"{selection['estimate']:.3f} (data kind: {selection['kind']}, object share "
        f"{selection['object_share']:.2f})",
        f"- **goal** (image ≥ {GOAL_IMAGE}, pooled pixel ≥ {GOAL_PIXEL}): {'met' if met else '**not met**'} "
        f"({image['overall']:.3f} / {pixel['overall']:.3f})",
        "",
        "## Image-level ROC-AUC (each class: its images against the 318 test-normal images)",
        "",
        "| detector | overall | " + " | ".join(CLASSES) + " |",
        "|---|---|" + "---|" * len(CLASSES),
        f"| **default command** (`{result['method']}`) | **{image['overall']:.3f}** | "
        + " | ".join(f"{image[c]:.3f}" for c in CLASSES)
        + " |",
    ]
    for name, peer in result["peers"].items():
        lines.append(
            f"| {name} (peer, 128×128) | {peer['overall']:.3f} | "
            + " | ".join(f"{peer[c]:.3f}" for c in CLASSES)
            + " |"
        )
    lines += [
        "",
        "## Pixel-level ROC-AUC at 128×128 (the anomaly map, resized)",
        "",
        "| map | overall | " + " | ".join(CLASSES) + " |",
        "|---|---|" + "---|" * len(CLASSES),
        f"| default command (`{result['method']}`) | **{pixel['overall']:.3f}** | "
        + " | ".join(f"{pixel[c]:.3f}" for c in CLASSES)
        + " |",
        "",
        "## The label-free choice (validation: held-out normals vs synthetic anomalies)",
        "",
        "| family | method | validation ROC-AUC |",
        "|---|---|---|",
    ]
    for c in selection["candidates"]:
        lines.append(f"| {c['family']} | `{c['method']}` | {c['validation_auroc']:.3f} |")
    lines += ["", "The command's output:", "", "```", training["output"].strip(), "```", ""]
    return "\n".join(lines)


def bench_main(
    name: str,
    description: str,
    run: Callable[[Path, Path, int], dict],
    render: Callable[[dict], str],
    argv: Sequence[str] | None = None,
) -> None:
    """The command line of a benchmark on the magnetic tiles (--data, --work, --threads): its
    result stored as RESULTS/NAME.json and rendered to RESULTS/NAME.md."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/magnetic-tile"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/inspector-bench") / name)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = run(args.data, args.work, args.threads)
    store(result, RESULTS / f"{name}.json")
    write_report(RESULTS / f"{name}.md", render(result))
    print(render(result))


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("magnetic_tile_default", __doc__.splitlines()[0], run, render, argv)


if __name__ == "__main__":
    main()
