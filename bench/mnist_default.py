"""Noisy MNIST through the default training path: every digit, no method, beside the classic peers.

Protocol: ../shared/benchmarks/noisy-mnist.md. For each normal digit k: the first 3000 noisy
training images of k go through what `inspector train --data DIR --out M` does with them
(``bench/default_path.train_arrays``: frame shape, label-free choice of family and method,
training, all with the command's defaults), and the chosen method scores the fixed test
subset (the first 2000 t10k images). The peers of ``bench/peers.py`` (blur-PCA, blur-kNN,
glimpse-kNN) train on the same frames and score the same test frames in the same run. No
test label is used by any choice; the other method of the chosen family is reported beside
it for information only.

One JSON per digit under ``bench/results/mnist_default_runs/`` (a digit whose file exists is
not run again); ``bench/results/mnist_default.md`` is rewritten after each digit.

    python -m bench.mnist_default --data ../shared/data/mnist        # the digits not stored yet
    python -m bench.mnist_default --render                           # the Markdown from the stored runs

Goal (issue 18): average ROC-AUC ≥ 0.95, and every digit at or above glimpse-kNN.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from bench.default_path import train_arrays
from bench.mnist import OneClassTask, one_class_task
from bench.paper_table import store
from bench.peers import PEERS, Peer
from bench.provenance import git_commit
from inspector.config import FrameSpec
from inspector.detector import Detector

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "mnist_default_runs"
TRAIN_SIZE = 3000
GOAL = 0.95


def run_task(
    task: OneClassTask, digit: int, commit: str, module: str, peers: Mapping[str, Peer] = PEERS
) -> dict:
    """The default path trained on normal digit ``digit``'s frames, the test ROC-AUC of its choice
    and of the ``peers``; ``commit``: the code this process loaded (taken as it started);
    ``module``: the benchmark's, for the command recorded."""
    cpu, wall = time.process_time(), time.time()
    checkpoint = train_arrays(task.train, FrameSpec())
    train_cpu, train_wall = time.process_time() - cpu, time.time() - wall
    chosen = checkpoint.default_method
    auc, score_seconds = {}, {}
    for method in checkpoint.family.methods:
        started = time.time()
        detections = Detector(checkpoint, method, device="cpu").score_arrays(task.test)
        scores = np.array([d.score for d in detections])
        auc[method] = round(float(roc_auc_score(task.test_labels, scores)), 4)
        score_seconds[method] = round(time.time() - started, 1)
    peer_auc = {
        name: round(float(roc_auc_score(task.test_labels, peer(task.train, task.test))), 4)
        for name, peer in peers.items()
    }
    selection = checkpoint.metadata["selection"]
    return {
        "digit": digit,
        "family": checkpoint.family.name,
        "method": chosen,
        "auc": auc[chosen],
        "auc_by_method": auc,
        "estimate": selection["estimate"],
        "selection": selection,
        "peers": peer_auc,
        "train_frames": len(task.train),
        "train_cpu_seconds": round(train_cpu, 1),
        "train_wall_seconds": round(train_wall, 1),
        "score_seconds_2000_frames": score_seconds,
        "commit": commit,
        "host": platform.node(),
        "machine": f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, no GPU used",
        "command": shlex.join(["python", "-m", module, *sys.argv[1:]]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


INTRO = [
    "# Noisy MNIST through the default training path (issue 18)",
    "",
    "Protocol: `../shared/benchmarks/noisy-mnist.md` (3000 noisy training images of the normal digit, "
    "the first 2000 t10k images to test). Each digit: what `inspector train --data DIR --out M` does "
    "(no method, no settings: `bench/default_path.py`), its chosen method scoring the test subset; "
    "the classic peers (`bench/peers.py`) trained and scored on the same frames in the same run. "
    "Runs: `bench/mnist_default.py`, one JSON per digit in `mnist_default_runs/`.",
]
KNOWN = [  # what was known of this test split when the rules were set
    "- A previous, lost session had chosen σ 2 and mean-vs-max while looking at this test split; "
    "none of that is used here.",
]


def render(runs: list[dict], intro: Sequence[str] = INTRO, known: Sequence[str] = KNOWN) -> str:
    runs = sorted(runs, key=lambda r: r["digit"])
    peer_names = list(PEERS)
    lines = [
        *intro[:-1],
        intro[-1] + f" Digits done: {len(runs)} of 10.",
        "",
        "| digit | chosen (family / method) | validation estimate | **default** | "
        + " | ".join(peer_names)
        + " | ≥ glimpse-kNN | other method (info) | training (CPU / wall) |",
        "|---|---|---|---|" + "---|" * len(peer_names) + "---|---|---|",
    ]
    for r in runs:
        other = {m: a for m, a in r["auc_by_method"].items() if m != r["method"]}
        lines.append(
            f"| {r['digit']} | {r['family']} / `{r['method']}` | {r['estimate']:.3f} | **{r['auc']:.3f}** | "
            + " | ".join(f"{r['peers'][p]:.3f}" for p in peer_names)
            + f" | {'yes' if r['auc'] >= r['peers']['glimpse_knn'] else '**no**'} | "
            + ", ".join(f"`{m}` {a:.3f}" for m, a in other.items())
            + f" | {r['train_cpu_seconds'] / 60:.1f} / {r['train_wall_seconds'] / 60:.1f} min |"
        )
    if runs:
        mean = np.mean([r["auc"] for r in runs])
        peers_mean = " | ".join(f"{np.mean([r['peers'][p] for r in runs]):.3f}" for p in peer_names)
        estimate = np.mean([r["estimate"] for r in runs])
        lines.append(f"| **average** | | {estimate:.3f} | **{mean:.3f}** | {peers_mean} | | | |")
        below = [r["digit"] for r in runs if r["auc"] < r["peers"]["glimpse_knn"]]
        met = mean >= GOAL and not below and len(runs) == 10
        lines += [
            "",
            f"**Goal** (average ≥ {GOAL} and every digit ≥ glimpse-kNN): {'met' if met else '**not met**'} "
            f"(average {mean:.3f} over {len(runs)} digits; below glimpse-kNN: {below or 'none'}).",
        ]
    lines += [
        "",
        "## How the choices were made",
        "",
        "- No test label and no test frame: the family, its method and every setting come from the "
        "training frames (`inspector/selection.py`): the data-kind gate (objects on a plain background "
        "→ glimpse candidates only), then held-out normals against synthetic anomalies made from them "
        "(`inspector/synthetic.py`); the validation estimate is that ROC-AUC.",
        "- Fixed before any run, not tuned here: the peak's smoothing σ (half a feature cell, PatchCore's "
        "σ 4 px at stride 8), the bank (10% of the training patches, at most 8192, greedy k-centre), the "
        "glimpse (the `vaegan+` and glimpse-kNN crop, 112 px for the backbone), the methods (`-max`: "
        "peak of the smoothed map; `-mean`: mean distance; since c1a06da `-pixels`: the glimpse-kNN "
        "peer's own score) offered to the validation, which picks one per digit, or averages those "
        "within one standard error of the best (`-ensemble`; since afe4784; the rule was designed on "
        "the magnetic tiles, where both candidates' test figures were known; on noisy MNIST the "
        "methods' test figures of earlier runs were known too).",
        "- Designed after seeing test figures (disclosed): `-pixels` was added, and the gate changed to "
        "read the background's level on the frame's border and to count the object's edge (3d14b9d), "
        "after the UCI digits' runs at 3a5cd94 had shown the default below glimpse-kNN on every digit, "
        "with 7 of 10 digits sent past the gate to the whole-frame memory, and with noisy MNIST's one "
        "shortfall known (digit 1: 0.996 against glimpse-kNN's 0.997). Their settings are the peer's "
        "own (5 nearest, 28×28, σ 1.5) and the flatness test's blur (σ 2 px); no setting was tried "
        "against a test split.",
        *known,
        "",
        "## Runs",
        "",
    ]
    for r in runs:
        lines.append(
            f"- digit {r['digit']}: commit {r['commit']}, {r['machine']}, host {r['host']}, "
            f"finished {r['finished_at']}, command `{r['command']}`"
        )
    return "\n".join(lines) + "\n"


def stored(runs: Path = RUNS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob("digit*.json"))]


def run_digits(
    digits: Sequence[int],
    task: Callable[[int], OneClassTask],
    runs: Path,
    report: Path,
    module: str,
    intro: Sequence[str] = INTRO,
    known: Sequence[str] = KNOWN,
) -> None:
    """Each of ``digits`` not stored yet under ``runs`` (one JSON each), the report rewritten after
    each run and at the end (from every stored run)."""
    commit = git_commit()
    for digit in digits:
        path = runs / f"digit{digit}.json"
        if path.exists():
            continue
        result = run_task(task(digit), digit, commit, module)
        store(result, path)
        print(f"digit {digit}: {result['method']} {result['auc']:.3f} peers {result['peers']}", flush=True)
        report.write_text(render(stored(runs), intro, known))
    report.write_text(render(stored(runs), intro, known))
    print(report.read_text())


def digits_options(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, list[int]]:
    """The options every one-class digits benchmark takes, parsed (torch's threads set): the
    arguments, and the digits to run (none with --render)."""
    parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args, [] if args.render else [int(d) for d in args.digits.split(",")]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/mnist", help="MNIST-format IDX folder")
    args, digits = digits_options(parser, argv)
    run_digits(
        digits,
        lambda digit: one_class_task(args.data, digit, train_size=TRAIN_SIZE),
        RUNS,
        RESULTS / "mnist_default.md",
        "bench.mnist_default",
    )


if __name__ == "__main__":
    main()
