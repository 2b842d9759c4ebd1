"""Every model family trained and scored on an accelerator, checked against the CPU.

The product promises that the scoring path runs on a GPU by configuration alone
(``device: cuda``). This script holds it to that: for each family (the fixed-camera VAEGAN
with neighbour-measured maps) it trains a small model for a few epochs on the
device, saves and reloads the checkpoint, scores the same frames on the device and on the
CPU with every scoring method, and reports how far the two disagree and how fast each was.

    python -m bench.device_check --device cuda

writes ``bench/results/device_check.md``. It needs no data: the frames are generated.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.provenance import git_commit, gpu_name
from inspector.config import FrameSpec
from inspector.detector import Detector, resolve_device
from inspector.models import ModelConfig, family_of_config
from inspector.models.anogan import AnoGANConfig
from inspector.models.fixed_camera import FixedCameraConfig
from inspector.models.glimpse_vaegan import GlimpseConfig
from inspector.models.vae import VAEConfig
from inspector.models.vaegan import VAEGANConfig
from inspector.pipeline.thresholds import is_anomaly
from inspector.training import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "device_check.md"
SIZE = 64
VARIANTS: dict[str, ModelConfig] = {
    "vae": VAEConfig(image_size=SIZE),
    "anogan": AnoGANConfig(image_size=SIZE, search_steps=20),
    "vaegan": VAEGANConfig(image_size=SIZE),
    "vaegan-z, 10 neighbours": FixedCameraConfig(image_size=SIZE, region_blur=8.0, neighbours=10),
    "vaegan+": GlimpseConfig(image_size=SIZE),
}


@dataclass
class Row:
    variant: str
    method: str
    train_seconds: float
    device_ms: float  # per frame, scoring on the device
    cpu_ms: float  # per frame, scoring on the CPU
    score_gap: float  # largest |device − cpu| score, relative to the spread of the CPU scores
    verdicts_differ: int  # frames whose verdict (score > threshold) differs between the two
    map_gap: float  # largest |device − cpu| of the anomaly maps, relative to the CPU maps' range


def frames(n: int, seed: int) -> np.ndarray:
    """Normal frames: a bright disc at a jittered place on a noisy field; the last quarter of a
    test set carries a dark scratch, so the scores spread."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = np.empty((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        cy, cx = SIZE / 2 + rng.uniform(-4, 4, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (SIZE / 5) ** 2) * 0.7
        out[i, 0] = np.clip(disc + 0.1 + rng.normal(0, 0.03, disc.shape), 0, 1)
    return out


def timed_scores(detector: Detector, x: np.ndarray) -> tuple[list, float]:
    detector.score_arrays(x[: detector.batch_size])  # warm-up: kernels, allocator
    if detector.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    detections = detector.score_arrays(x)
    return detections, (time.perf_counter() - start) * 1000 / len(x)


def relative_gap(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a − b|, relative to b's spread."""
    return float(np.abs(a - b).max() / max(np.ptp(b), 1e-12))


def check(device: str, epochs: int, n_train: int, n_test: int) -> list[Row]:
    train_x = frames(n_train, seed=0)
    test_x = frames(n_test, seed=1)
    test_x[-n_test // 4 :, 0, SIZE // 3, SIZE // 4 : SIZE // 2] = 0.0
    options = TrainOptions(epochs, device=device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="inspector-device-") as tmp:
        path = Path(tmp) / "model.pt"
        for variant, config in VARIANTS.items():
            start = time.perf_counter()
            train(train_x, config, FrameSpec(image_size=SIZE), options).save(path)
            seconds = time.perf_counter() - start
            for method in family_of_config(config).methods:
                cpu_detector = Detector.load(path, method, device="cpu")
                on_device, device_ms = timed_scores(Detector.load(path, method, device=device), test_x)
                on_cpu, cpu_ms = timed_scores(cpu_detector, test_x)
                pairs = list(zip(on_device, on_cpu, strict=True))
                score_gap = relative_gap(*(np.array([d.score for d in side]) for side in (on_device, on_cpu)))
                map_gap = relative_gap(*(np.stack([d.anomaly_map for d in s]) for s in (on_device, on_cpu)))
                threshold = cpu_detector.threshold
                differ = sum(
                    is_anomaly(a.score, threshold) != is_anomaly(b.score, threshold) for a, b in pairs
                )
                rows.append(Row(variant, method, seconds, device_ms, cpu_ms, score_gap, differ, map_gap))
                print(rows[-1], flush=True)
    return rows


def report(rows: Sequence[Row], device: torch.device, command: str, seconds: float, sizes: str) -> str:
    lines = [
        "# Device check: every family trained and scored on the device, against the CPU",
        "",
        f"`{command}` at {git_commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{seconds:.0f} s wall.",
        "",
        f"Device: {device} ({gpu_name(device)}); torch {torch.__version__}; "
        f"Python {platform.python_version()}; {platform.machine()}. {sizes}",
        "",
        "Score gap: the largest |device − CPU| score over the test frames, divided by the spread "
        "(max − min) of the CPU scores. Map gap: likewise for the anomaly maps. Verdicts: frames "
        "judged differently at the checkpoint's threshold.",
        "",
        "| model | method | training s | device ms/frame | CPU ms/frame | score gap | map gap "
        "| verdicts differ |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.variant} | {r.method} | {r.train_seconds:.1f} | {r.device_ms:.3f} | {r.cpu_ms:.2f} "
            f"| {r.score_gap:.1e} | {r.map_gap:.1e} | {r.verdicts_differ} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-frames", type=int, default=512)
    parser.add_argument("--test-frames", type=int, default=256)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    start = time.perf_counter()
    rows = check(str(device), args.epochs, args.train_frames, args.test_frames)
    command = shlex.join(
        ["python", "-m", "bench.device_check", *(argv if argv is not None else sys.argv[1:])]
    )
    sizes = (
        f"{SIZE}×{SIZE} grey frames, default architecture; {args.train_frames} training frames, "
        f"{args.epochs} epochs; {args.test_frames} test frames (a quarter scratched)."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(rows, device, command, time.perf_counter() - start, sizes))
    print(f"wrote {args.out}")
    # A GPU's TF32 convolutions differ from the CPU in the 4th digit, and AnoGAN's latent search
    # (gradient steps from those) drifts further: no verdict may change, scores within 10%.
    return 1 if any(r.verdicts_differ or r.score_gap > 0.1 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
