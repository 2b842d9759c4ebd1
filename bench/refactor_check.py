"""Scores of every family on small real runs, compared with the same runs at another commit.

A change that moves code but should not change a number (a refactor) is held to it here:
each case trains a family for a few epochs on real frames with a fixed seed (noisy MNIST,
magnetic tiles), scores the test frames with every method of the family and records the
weights' hash, the training losses, the default thresholds, every score and a hash of the
anomaly maps. Given ``--before`` (the JSON of a run at another commit), it writes the
comparison to ``bench/results/refactor_check.md``:

    python -m bench.refactor_check --before OTHER.json

The run's own JSON (``--json``, default bench/results/refactor_check.json) is the
``--before`` of the next such check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def run_case(frames: np.ndarray, test: np.ndarray, labels: np.ndarray, config, spec, options) -> dict:  # noqa: ANN001
    """Train, then score the test frames with every method of the family."""
    from sklearn.metrics import roc_auc_score

    from inspector.detector import Detector
    from inspector.models import family_of_config
    from inspector.training import train

    started = time.time()
    checkpoint = train(frames, config, spec, options)
    state = checkpoint.state_dict
    weights = _hash(b"".join(k.encode() + state[k].contiguous().numpy().tobytes() for k in sorted(state)))
    history = checkpoint.metadata["history"]
    entry: dict = {"weights": weights, "thresholds": checkpoint.thresholds, "history": history, "methods": {}}
    for method in family_of_config(config).methods:
        detections = Detector(checkpoint, method, device="cpu", batch_size=64).score_arrays(test)
        scores = [d.score for d in detections]
        maps = np.stack([d.anomaly_map for d in detections]).astype(np.float32)
        entry["methods"][method] = {
            "scores": scores,
            "auroc": float(roc_auc_score(labels, scores)),
            "map_sha256": _hash(maps.tobytes()),
        }
    entry["seconds"] = round(time.time() - started, 1)
    return entry


def run_all(data: Path) -> dict[str, dict]:
    import torch

    from bench.magnetic_tile import Budget, load_images, protocol_split
    from bench.mnist import one_class_task
    from inspector.config import FrameSpec
    from inspector.models import make_config
    from inspector.models.anogan import AnoGANConfig
    from inspector.models.glimpse_vaegan import GlimpseConfig
    from inspector.models.vae import VAEConfig
    from inspector.models.vaegan import VAEGANConfig
    from inspector.training import TrainOptions

    torch.set_num_threads(1)
    out: dict[str, dict] = {}
    task = one_class_task(data / "mnist", 0, train_size=1000, test_size=1000)
    mnist = {
        "mnist vae": (VAEConfig(width=16), 4),
        "mnist anogan": (AnoGANConfig(width=16, search_steps=10), 4),
        "mnist vaegan": (VAEGANConfig(width=16), 4),
        "mnist vaegan+": (GlimpseConfig(width=32, lr=1e-3, gan_weight=0.1), 8),
    }
    for name, (config, epochs) in mnist.items():
        options = TrainOptions(epochs=epochs, seed=0, device="cpu")
        out[name] = run_case(task.train, task.test, task.test_labels, config, FrameSpec(), options)
        _print(name, out[name])
    budget = Budget.quick()  # 64 px, flat-fielded; the fixed-camera VAEGAN with every option on
    split = protocol_split(data / "magnetic-tile")
    train_x, test_x = load_images(split.train, budget.frame_spec), load_images(split.test, budget.frame_spec)
    labels = (np.array(split.classes) != "Free").astype(int)
    for family, epochs in (("vaegan-z", 6), ("vae", 4)):
        config = make_config(family, {"image_size": 64, "channels": 1, **budget.model[family]})
        options = TrainOptions(epochs=epochs, seed=0, device="cpu", shift=2, gain=0.05, patience=5)
        out[f"tile {family}"] = run_case(train_x, test_x, labels, config, budget.frame_spec, options)
        _print(f"tile {family}", out[f"tile {family}"])
    return out


def _print(case: str, entry: dict) -> None:
    print(case, {method: round(e["auroc"], 4) for method, e in entry["methods"].items()}, flush=True)


def compare(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """One table row per (case, method): AUROC before and after, the largest score difference."""
    rows = []
    for case, now in after.items():
        then = before[case]
        same = [
            "weights" if now["weights"] == then["weights"] else "**weights differ**",
            "losses" if now["history"] == then["history"] else "**losses differ**",
        ]
        gap = max(abs(now["thresholds"][m] - then["thresholds"][m]) for m in now["thresholds"])
        for method, entry in now["methods"].items():
            old = then["methods"][method]
            score_gap = float(np.max(np.abs(np.array(entry["scores"]) - np.array(old["scores"]))))
            maps = "identical" if entry["map_sha256"] == old["map_sha256"] else "**differ**"
            rows.append(
                f"| {case} | {method} | {old['auroc']:.6f} | {entry['auroc']:.6f} | {score_gap:.1e} | "
                f"{maps} | {gap:.1e} | {', '.join(same)} |"
            )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="holds mnist/ and magnetic-tile/")
    parser.add_argument("--before", type=Path, help="a run of the same cases at another commit (JSON)")
    parser.add_argument("--json", type=Path, default=RESULTS / "refactor_check.json", help="this run's JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "refactor_check.md")
    args = parser.parse_args(argv)
    started = time.time()
    after = run_all(args.data)
    args.json.write_text(json.dumps(after))
    if args.before is None:
        return
    command = shlex.join(
        ["python", "-m", "bench.refactor_check", *(argv if argv is not None else sys.argv[1:])]
    )
    lines = [
        "# Refactor check: the same runs before and after, score for score",
        "",
        f"- **command**: `{command}`",
        f"- **git commit**: {git_commit()}",
        f"- **date (UTC)**: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}",
        f"- **machine**: {platform.machine()}, {os.cpu_count()} CPU cores, one torch thread; "
        f"Python {platform.python_version()}",
        f"- **wall time**: {(time.time() - started) / 60:.1f} min",
        "",
        "| case | method | AUROC before | AUROC after | max abs. score difference | anomaly maps "
        "| max abs. threshold difference | identical |",
        "|---|---|---:|---:|---:|---|---:|---|",
        *compare(json.loads(args.before.read_text()), after),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
