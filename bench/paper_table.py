"""The paper's Table 1 (noisy-MNIST columns), every method trained to convergence, one stored result per run.

Protocol: ../shared/benchmarks/noisy-mnist.md. A run is one (normal digit, seed, method): a
model family (it trains once and scores with each of its methods) or a classic peer
(``bench/peers.py``; deterministic, so seed 0 only). Each family trains on the first 3000
noisy training images of the digit under the one label-free stopping rule of
``bench/convergence.py`` and scores the fixed test subset (the first 2000 t10k images).
Every finished run is one JSON file under ``bench/results/paper_table_runs/<method>/``
(test ROC-AUC per scoring method, curves per epoch, CPU seconds, commit, machine); a run
whose file exists is never run again, so the table is built across sittings and machines:

    python -m bench.paper_table --data ../shared/data/mnist                 # what is not done, in plan order
    python -m bench.paper_table --data ../shared/data/mnist --shard 1/4     # every 4th run from the 2nd
    python -m bench.paper_table --data ../shared/data/mnist --job 3 0 vaegan
    python -m bench.paper_table --status                                     # what is done, what is left
    python -m bench.paper_report                                             # the table and figures

``bench/paper_report.py`` turns the stored runs into ``bench/results/paper_table.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from bench.convergence import StoppingRule, train_to_convergence
from bench.mnist import one_class_task
from bench.peers import PEERS
from bench.provenance import git_commit
from inspector.config import FrameSpec
from inspector.models import FAMILIES, AnomalyModel, make_config
from inspector.models.glimpse_vaegan import GlimpseVAEGAN

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUNS = RESULTS / "paper_table_runs"

TRAIN_SIZE = 3000  # first noisy training images of the normal digit (the protocol's peers use as many)
SEEDS = (0, 1, 2)
# The same width for every family; besides it, the paper's methods keep the library's defaults
# (Adam 2e-4, Larsen's weights) and ours the settings chosen in paper_selection.md.
SETTINGS: dict[str, dict] = {
    "vaegan": {"width": 32},
    "vaegan+": {"width": 32, "lr": 1e-3, "gan_weight": 0.1},
    "vae": {"width": 32},
    "anogan": {"width": 32, "search_steps": 10},
}
RULE = StoppingRule()
# Ours scored the paper's way: the glimpse error weighted by the glimpse discriminator's Grad-CAM
# (the ablation; not a method of the library, where Grad-CAM lowered validation AUROC).
GRADCAM_ON_OURS = "vaegan+×gradcam"


class Run(NamedTuple):
    digit: int
    seed: int
    method: str  # a family of SETTINGS or a peer of PEERS

    def path(self, runs: Path = RUNS) -> Path:
        return runs / self.method / f"digit{self.digit}-seed{self.seed}.json"


def plan() -> list[Run]:
    """Every run of the table, the most informative first: the peers (seconds each), then seed 0
    of the paper's VAEGAN beside ours digit by digit (a paper VAEGAN run takes ~20 CPU minutes:
    on two shared cores only a few fit in a sitting, and each should come with its comparison),
    the paper's two other methods, then seeds 1 and 2."""
    digits = range(10)
    peers = [Run(d, 0, m) for m in PEERS for d in digits]
    vaegans = [Run(d, s, m) for s in SEEDS for d in digits for m in ("vaegan", "vaegan+")]
    others = [Run(d, s, m) for s in SEEDS for m in ("vae", "anogan") for d in digits]
    return peers + vaegans[:20] + others[:20] + vaegans[20:] + others[20:]


def scoring_methods(method: str) -> tuple[str, ...]:
    """The test scores a run records."""
    if method in PEERS:
        return (method,)
    return FAMILIES[method].methods + ((GRADCAM_ON_OURS,) if method == "vaegan+" else ())


def scores_of(
    model: AnomalyModel, method: str, frames: np.ndarray, device: str, batch: int = 100
) -> np.ndarray:
    """Anomaly scores of frames under one scoring method of a trained model (or the ablation)."""
    out = []
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(frames[i : i + batch]).to(device)
        if method == GRADCAM_ON_OURS:
            assert isinstance(model, GlimpseVAEGAN)
            seen = model.glimpsed(x)
            score = (seen.error * model.grad_cam(seen.glimpse)).mean(dim=(1, 2))
        else:
            score = model.score(x, method).score
        out.append(score.detach().cpu().numpy())
    return np.concatenate(out)


def fit_and_score(
    method: str,
    train_frames: np.ndarray,
    test_frames: np.ndarray,
    config_values: dict,
    spec: FrameSpec,
    rule: StoppingRule,
    seed: int,
    device: str,
    **options,
) -> dict:
    """Train a family to convergence (or fit a peer) and score the test frames with every
    scoring method: {"scores": {method: array}, plus the training record for a family}."""
    if method in PEERS:
        return {"scores": {method: PEERS[method](train_frames, test_frames)}}
    config = make_config(method, {**config_values, "image_size": spec.image_size})
    model, record = train_to_convergence(train_frames, config, spec, rule, seed, device, **options)
    with torch.no_grad():
        record["scores"] = {m: scores_of(model, m, test_frames, device) for m in scoring_methods(method)}
    return record


def provenance(threads: int, device: str) -> dict:
    """What a stored run says about how it was made."""
    return {
        "commit": git_commit(),
        "host": platform.node(),
        "machine": f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads ({threads} asked), "
        f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""),
        "command": shlex.join(["python", "-m", "bench.paper_table", *sys.argv[1:]]),
    }


def run_job(data: str, run: Run, rule: StoppingRule, device: str, train_size: int = TRAIN_SIZE) -> dict:
    """One run, as stored: test ROC-AUC per scoring method, curves, seconds."""
    task = one_class_task(data, run.digit, train_size=train_size)
    cpu, wall = time.process_time(), time.time()
    record = fit_and_score(
        run.method, task.train, task.test, SETTINGS.get(run.method, {}), FrameSpec(), rule, run.seed, device
    )
    scores = record.pop("scores")
    return {
        **run._asdict(),
        "auc": {m: round(float(roc_auc_score(task.test_labels, s)), 4) for m, s in scores.items()},
        **record,
        "train_frames": len(task.train),
        "settings": SETTINGS.get(run.method, {}),
        "rule": dataclasses.asdict(rule),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "wall_seconds": round(time.time() - wall, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def store(result: dict, path: Path) -> None:
    """Write a run's file whole or not at all (a run killed mid-write leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=1) + "\n")
    partial.replace(path)


def stored_runs(runs: Path = RUNS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob("*/*.json"))]


def pending(
    runs: Path = RUNS, shard: tuple[int, int] = (0, 1), methods: Sequence[str] = (), seeds: Sequence[int] = ()
) -> Iterator[Run]:
    """The shard's runs of the plan not stored yet, in plan order (only ``methods`` and ``seeds``
    where given)."""
    index, count = shard
    for i, run in enumerate(plan()):
        chosen = (not methods or run.method in methods) and (not seeds or run.seed in seeds)
        if i % count == index and chosen and not run.path(runs).exists():
            yield run


def status(runs: Path = RUNS) -> str:
    """Which runs are done, per method and seed, and how to resume."""
    done = {(r.digit, r.seed, r.method) for r in plan() if r.path(runs).exists()}
    lines = ["| method | seed | digits done | digits left |", "|---|---|---|---|"]
    for method in dict.fromkeys(r.method for r in plan()):
        for seed in sorted({r.seed for r in plan() if r.method == method}):
            todo = [r.digit for r in plan() if r.method == method and r.seed == seed]
            have = [d for d in todo if (d, seed, method) in done]
            left = [d for d in todo if (d, seed, method) not in done]
            lines.append(
                f"| `{method}` | {seed} | {len(have)} of {len(todo)} | {' '.join(map(str, left)) or '–'} |"
            )
    return f"{len(done)} of {len(plan())} runs done.\n\n" + "\n".join(lines) + "\n"


def parse_shard(text: str) -> tuple[int, int]:
    index, count = (int(v) for v in text.split("/"))
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard {text}: want i/n with 0 ≤ i < n")
    return index, count


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "mnist"), help="MNIST IDX folder"
    )
    parser.add_argument(
        "--job", nargs=3, metavar=("DIGIT", "SEED", "METHOD"), help="one run (even if stored)"
    )
    parser.add_argument(
        "--shard", type=parse_shard, default=(0, 1), help="i/n: every n-th pending run from i"
    )
    parser.add_argument("--methods", nargs="*", default=(), help="only these methods' runs")
    parser.add_argument("--seeds", nargs="*", type=int, default=(), help="only these seeds' runs")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many runs (0 = all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where run files are stored")
    parser.add_argument("--status", action="store_true", help="print what is done and exit")
    args = parser.parse_args(argv)
    if args.status:
        print(status(args.runs))
        return
    torch.set_num_threads(args.threads)
    if args.job:
        todo: Iterator[Run] | list[Run] = [Run(int(args.job[0]), int(args.job[1]), args.job[2])]
    else:
        todo = pending(args.runs, args.shard, args.methods, args.seeds)
    stamp = provenance(args.threads, args.device)  # the code as it was when this process started
    for count, run in enumerate(todo, start=1):
        result = {**run_job(args.data, run, RULE, args.device), **stamp}
        store(result, run.path(args.runs))
        print(
            f"{run.method} digit {run.digit} seed {run.seed}: {json.dumps(result['auc'])} "
            f"({result.get('epochs_run', '–')} epochs, {result['cpu_seconds']:.0f} CPU s)",
            flush=True,
        )
        if count == args.limit:
            break


if __name__ == "__main__":
    main()
