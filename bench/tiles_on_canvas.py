"""A part before a wider camera: the magnetic tiles placed on a plain dark canvas (issue 18).

A line the project has no data of, made from real defects: each tile image of the magnetic-tile
protocol (../shared/benchmarks/magnetic-tile.md: the same train and test split) is placed near
the middle of a 480×720 canvas of dark grey (level 12 of 255, noise σ 2), shifted by up to 8 px,
so every frame shows one part on a plain background (tiles' own sizes vary: widths 103-632).
The frames' kind gate finds one part at a fixed place (its centre moves by about 0.03 of the
frame), where every family competes: the glimpse family (at 112 px and at the part's own size)
and the whole-frame memory, which sees the part at the frame's resolution.

Rows, all trained on the same 634 placed normal frames and scoring the same 710 placed test
frames, in the same run: the default command (`inspector train --data DIR --out M`); at the
default's frame shape (`--image-size H --width W`), the glimpse family's peak at its default
112 px glimpse (`--method glimpse-max`: what the default chose before the glimpse could show
the objects at their own size) and the whole-frame family (`--method patch-memory`, its default
method); the classic peers (`bench/peers.py`, 128×128). Image-level ROC-AUC only. Resumable:
frames and models stay in ``--work``.

    python -m bench.tiles_on_canvas --work DIR
"""

from __future__ import annotations

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
import torch

from bench.default_path import train_command
from bench.magnetic_tile import CLASSES, image_aurocs, load_images, protocol_split
from bench.magnetic_tile_default import bench_main
from bench.paper_table import store
from bench.peers import PEERS
from bench.provenance import git_commit
from inspector.config import FrameSpec
from inspector.detector import Detector

RESULTS = Path(__file__).resolve().parent / "results"
CANVAS, LEVEL, NOISE, SHIFT = (480, 720), 12, 2.0, 8
FORCED = {"glimpse_112": "glimpse-max", "whole_frame": "patch-memory"}  # row -> the --method it trains


def place(source: Path, target: Path, seed: int) -> None:
    """The tile image at ``source`` on its canvas, written to ``target`` (kept if there)."""
    if target.exists():
        return
    rng = np.random.default_rng(seed)
    tile = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    canvas = (LEVEL + rng.normal(0, NOISE, CANVAS)).clip(0, 255).astype(np.uint8)
    h, w = tile.shape
    top, left = (np.array(CANVAS) - (h, w)) // 2 + rng.integers(-SHIFT, SHIFT + 1, 2)
    canvas[top : top + h, left : left + w] = tile
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), canvas)


def trained(work: Path, name: str, extra: Sequence[str] = ()) -> dict:
    """The training record of ``inspector train`` on the placed normals (a stored one is reused)."""
    record = work / f"{name}.json"
    if not record.exists() or not (work / f"{name}.pt").exists():
        store(train_command(work / "train", work / f"{name}.pt", extra), record)
    return json.loads(record.read_text())


def scored(model: Path, tests: Sequence[Path], classes: np.ndarray) -> dict[str, float]:
    detector = Detector.load(model, device="cpu")
    frames = load_images(tests, detector.checkpoint.frame_spec)
    return image_aurocs(np.array([d.score for d in detector.score_arrays(frames)]), classes)


def run(data: Path, work: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    split = protocol_split(data)
    train = [work / "train" / f"{i:04d}.png" for i in range(len(split.train))]
    tests = [work / "test" / f"{i:04d}.png" for i in range(len(split.test))]
    for i, (source, target) in enumerate(zip(split.train + split.test, train + tests, strict=True)):
        place(source, target, seed=i)
    classes = np.array(split.classes)
    default = trained(work, "default")
    checkpoint = Detector.load(work / "default.pt", device="cpu").checkpoint
    rows, columns = checkpoint.frame_spec.shape
    shape = ["--image-size", str(rows), "--width", str(columns)]
    forced = {name: trained(work, name, ["--method", method, *shape]) for name, method in FORCED.items()}
    protocol = FrameSpec(image_size=128)
    train_128, test_128 = load_images(train, protocol), load_images(tests, protocol)
    return {
        "default": {**default, "auroc": scored(work / "default.pt", tests, classes)},
        **{
            name: {**record, "auroc": scored(work / f"{name}.pt", tests, classes)}
            for name, record in forced.items()
        },
        "chosen": checkpoint.metadata.get("method"),
        "selection": checkpoint.metadata["selection"],
        "frame_shape": [rows, columns],
        "peers": {name: image_aurocs(peer(train_128, test_128), classes) for name, peer in PEERS.items()},
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), {threads} torch threads, no GPU",
        "command": shlex.join(["python", "-m", "bench.tiles_on_canvas", *sys.argv[1:]]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render(result: dict) -> str:
    rows, columns = result["frame_shape"]
    selection = result["selection"]
    table = [
        (f"**default command** ({selection.get('candidate')}, `{result['chosen']}`)", result["default"]),
        *((f"`{result[name]['command']}`", result[name]) for name in FORCED),
        *((f"{name} (peer, 128×128)", {"auroc": auroc}) for name, auroc in result["peers"].items()),
    ]
    lines = [
        "# Magnetic tiles placed on a plain canvas: a part before a wider camera (issue 18)",
        "",
        f"- **command**: `{result['command']}`; commit {result['commit']}; {result['machine']}; "
        f"finished {result['finished_at']}",
        f"- **frames**: {rows}×{columns} px as the default chose; data kind {selection['kind']} "
        f"(object share {selection['object_share']:.2f}); validation estimate {selection['estimate']:.3f}",
        "- **training** (wall): "
        + ", ".join(f"{name} {result[name]['wall_seconds'] / 60:.1f} min" for name in ("default", *FORCED)),
        "",
        "| detector | overall | " + " | ".join(CLASSES) + " |",
        "|---|---|" + "---|" * len(CLASSES),
    ]
    for name, row in table:
        auroc = row["auroc"]
        lines.append(
            f"| {name} | {auroc['overall']:.3f} | " + " | ".join(f"{auroc[c]:.3f}" for c in CLASSES) + " |"
        )
    lines += ["", "| candidate | method | validation ROC-AUC |", "|---|---|---|"]
    lines += [
        f"| {c['family']} | `{c['method']}` | {c['validation_auroc']:.3f} |" for c in selection["candidates"]
    ]
    lines += ["", "The default command's output:", "", "```", result["default"]["output"].strip(), "```", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("tiles_on_canvas", __doc__.splitlines()[0], run, render, argv)


if __name__ == "__main__":
    main()
