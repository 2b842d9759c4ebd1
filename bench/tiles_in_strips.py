"""Large elongated frames with small defects: magnetic tiles stacked three to a strip (issue 18).

The issue's unseen surface set has frames of about 500×1250 px with thin defects; the project has
none. This one is made from real defects: three tile images of the magnetic-tile protocol
(../shared/benchmarks/magnetic-tile.md: the same train and test split), each resized to 500×417,
stacked into a 500-wide, 1250-tall frame. Training strips hold the 634 train-normal tiles, each
once (211 strips); normal test strips the 318 test-normal tiles, each once (106); every defective
tile (392) makes one anomalous strip, at a random third, beside two test-normal tiles. Masks are
stacked alike. The default frame shape (at most 256×256 pixels, aspect kept) scores such a strip
at 161×404 px: its tiles at about 0.6 of their own resolution.

Rows, in the same run: the default command (`inspector train --data DIR --out M`); the same
command at four times the pixels (`--image-size 809 --width 323`: what a 512×512 budget would
give, the tiles at about their own resolution), choosing as the default does; the classic peers
(`bench/peers.py`) at 320×128. Image ROC-AUC (each class against the normal strips) and pooled
pixel ROC-AUC (maps and masks at 320×128). Resumable: frames and models stay in ``--work``.

    python -m bench.tiles_in_strips --work DIR
"""

from __future__ import annotations

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
from torch.nn import functional as F

from bench.magnetic_tile import CLASSES, image_aurocs, load_images, pixel_aurocs, protocol_split
from bench.magnetic_tile_default import bench_main
from bench.peers import PEERS
from bench.provenance import git_commit
from bench.tiles_on_canvas import trained
from inspector.config import FrameSpec
from inspector.detector import Detector

STRIP, THIRD = (1250, 500), 417  # (rows, columns) of a strip; rows of each tile in it
METRIC = (320, 128)  # (rows, columns) of the maps and masks the pixel figure compares
FINE = ["--image-size", "809", "--width", "323"]  # 4× the default's pixels


def tile(path: Path) -> np.ndarray:
    return cv2.resize(
        cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (STRIP[1], THIRD), interpolation=cv2.INTER_AREA
    )


def mask(path: Path | None) -> np.ndarray:
    if path is None:
        return np.zeros((THIRD, STRIP[1]), np.uint8)
    found = cv2.imread(str(path.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(found, (STRIP[1], THIRD), interpolation=cv2.INTER_NEAREST)


def write_strip(target: Path, tiles: Sequence[Path], defective: int | None = None) -> None:
    """The strip of ``tiles`` (top to bottom) at ``target``, and its mask beside it in masks/ (the
    ``defective`` one's mask, the others' blank); kept if there."""
    masks = target.parent.parent / "masks" / target.name
    if target.exists() and masks.exists():
        return
    for folder in (target.parent, masks.parent):
        folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(masks), np.vstack([mask(p if i == defective else None) for i, p in enumerate(tiles)])[: STRIP[0]]
    )
    cv2.imwrite(str(target), np.vstack([tile(p) for p in tiles])[: STRIP[0]])


def make_strips(data: Path, work: Path) -> tuple[list[Path], np.ndarray]:
    """Write the training and test strips (seeded); the test strips' paths and classes."""
    split = protocol_split(data)
    rng = np.random.default_rng(0)
    train = [split.train[i] for i in rng.permutation(len(split.train))]
    for n in range(len(train) // 3):
        write_strip(work / "train" / f"{n:04d}.png", train[3 * n : 3 * n + 3])
    normal = [p for p, c in zip(split.test, split.classes, strict=True) if c == "Free"]
    tests, classes = [], []
    for n, start in enumerate(range(0, len(normal) - 2, 3)):
        tests.append(work / "test" / f"free_{n:04d}.png")
        classes.append("Free")
        write_strip(tests[-1], normal[start : start + 3])
    defects = [(p, c) for p, c in zip(split.test, split.classes, strict=True) if c != "Free"]
    for n, (path, name) in enumerate(defects):
        beside = [normal[i] for i in rng.choice(len(normal), 2, replace=False)]
        at = int(rng.integers(3))
        tests.append(work / "test" / f"{name}_{n:04d}.png")
        classes.append(name)
        write_strip(tests[-1], [*beside[:at], path, *beside[at:]], at)
    return tests, np.array(classes)


def scored(model: Path, tests: Sequence[Path], classes: np.ndarray, masks: np.ndarray) -> dict:
    """Image and pixel ROC-AUC of a checkpoint's chosen method, and its scoring CPU a frame."""
    detector = Detector.load(model, device="cpu")
    frames = load_images(tests, detector.checkpoint.frame_spec)
    cpu = time.process_time()
    detections = detector.score_arrays(frames)
    cpu = time.process_time() - cpu
    maps = torch.from_numpy(np.stack([d.anomaly_map for d in detections]).astype(np.float32))[:, None]
    maps = F.interpolate(maps, size=METRIC, mode="bilinear", align_corners=False)[:, 0].numpy()
    return {
        "method": detector.method,
        "frame_shape": list(detector.checkpoint.frame_spec.shape),
        "estimate": detector.checkpoint.metadata["selection"]["estimate"],
        "image": image_aurocs(np.array([d.score for d in detections]), classes),
        "pixel": pixel_aurocs(maps, masks, classes),
        "score_cpu_ms": round(1000 * cpu / len(frames)),
    }


def run(data: Path, work: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    tests, classes = make_strips(data, work)
    size = (METRIC[1], METRIC[0])
    masks = np.stack(
        [
            cv2.resize(cv2.imread(str(work / "masks" / p.name), 0), size, interpolation=cv2.INTER_NEAREST)
            > 127
            for p in tests
        ]
    )
    rows = {"default": trained(work, "default"), "fine": trained(work, "fine", FINE)}
    protocol = FrameSpec(image_size=METRIC[0], width=METRIC[1])
    train = sorted((work / "train").glob("*.png"))
    train_small, test_small = load_images(train, protocol), load_images(tests, protocol)
    return {
        **{
            name: {**record, **scored(work / f"{name}.pt", tests, classes, masks)}
            for name, record in rows.items()
        },
        "peers": {name: image_aurocs(peer(train_small, test_small), classes) for name, peer in PEERS.items()},
        "strips": {
            "train": len(train),
            "test": {str(c): int((classes == c).sum()) for c in np.unique(classes)},
        },
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {threads} torch threads (scoring), no GPU",
        "command": shlex.join(["python", "-m", "bench.tiles_in_strips", *sys.argv[1:]]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render(result: dict) -> str:
    def row(name: str, image: dict, pixel: dict | None) -> str:
        shown = f"{pixel['overall']:.3f}" if pixel else "—"
        return (
            f"| {name} | {image['overall']:.3f} | "
            + " | ".join(f"{image[c]:.3f}" for c in CLASSES)
            + f" | {shown} |"
        )

    runs = {"default": "**default command**", "fine": "default command, `" + " ".join(FINE) + "`"}
    lines = [
        "# Magnetic tiles stacked in 500×1250 strips: large elongated frames (issue 18)",
        "",
        f"- **command**: `{result['command']}`; commit {result['commit']}; {result['machine']}; "
        f"finished {result['finished_at']}",
        f"- **strips**: {result['strips']['train']} to train; test: "
        + ", ".join(f"{name} {count}" for name, count in result["strips"]["test"].items()),
        "",
        "| detector | image overall | " + " | ".join(CLASSES) + " | pooled pixel |",
        "|---|---|" + "---|" * (len(CLASSES) + 1),
        *(
            row(
                f"{runs[n]} ({'×'.join(map(str, result[n]['frame_shape']))}, `{result[n]['method']}`)",
                result[n]["image"],
                result[n]["pixel"],
            )
            for n in runs
        ),
        *(row(f"{name} (peer, 320×128)", auroc, None) for name, auroc in result["peers"].items()),
        "",
        "| run | frames | validation estimate | training (wall / CPU) | scoring CPU a frame |",
        "|---|---|---|---|---|",
    ]
    for name in runs:
        r = result[name]
        lines.append(
            f"| {name} | {r['frame_shape'][0]}×{r['frame_shape'][1]} | {r['estimate']:.3f} | "
            f"{r['wall_seconds'] / 60:.1f} / {r['cpu_seconds'] / 60:.1f} min | {r['score_cpu_ms']} ms |"
        )
    for name in runs:
        lines += ["", f"The {name} run's output:", "", "```", result[name]["output"].strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    bench_main("tiles_in_strips", __doc__.splitlines()[0], run, render, argv)


if __name__ == "__main__":
    main()
