"""The paper's Table 1 (noisy-MNIST columns), measured: ``inspector bench paper --data DIR``.

Protocol: ../shared/benchmarks/noisy-mnist.md. For each normal digit k and seed, every
model family is trained on noisy training images of k (the first ``train_size`` of them)
and scored on the fixed test subset (the first 2000 t10k images); the ROC-AUC of each
scoring method is recorded. Runs go to a process pool (one torch thread each); every
finished run is stored as JSON and the Markdown table is rewritten, so a cut-short run
still leaves a true, partial table. Each run is its own process (``--one DIGIT SEED``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# The paper's Table 1 (MNIST): normal '0', normal '1', average of the 10 normal classes.
PAPER = {
    "vae": (".63±.2", ".83±.1", ".64±.1"),
    "anogan": (".45±.0", ".75±.0", ".54±.1"),
    "vaegan": (".71±.0", ".86±.0", ".69±.1"),
    "vaegan-attn": (".74±.0", ".92±.0", ".73±.1"),
}
LABELS = {
    "vae": "VAE, reconstruction probability (paper)",
    "anogan": "AnoGAN (paper)",
    "vaegan": "naive VAEGAN, error (paper)",
    "vaegan-attn": "VAEGAN + Grad-CAM (paper)",
    "vaegan+": "glimpse VAEGAN, error (ours)",
    "vaegan-attn+": "glimpse VAEGAN, top-5% attended error + L_feat (ours)",
}

# How our variant differs from the paper and how its settings were chosen (measured, by hand).
SELECTION = (Path(__file__).resolve().parent / "paper_selection.md").read_text()


@dataclass
class Budget:
    """Everything that sizes a run; the same for every digit."""

    train_size: int = 3000  # first noisy training images of the normal digit (as the protocol's peers)
    epochs: dict[str, int] = field(
        default_factory=lambda: {"vae": 6, "anogan": 6, "vaegan": 4, "vaegan+": 15}
    )
    model: dict[str, dict] = field(
        default_factory=lambda: {
            "vae": {"width": 16},
            "anogan": {"width": 16, "search_steps": 10},
            "vaegan": {"width": 16},
            "vaegan+": {"width": 32, "lr": 1e-3, "gan_weight": 0.1},
        }
    )

    @classmethod
    def quick(cls) -> Budget:
        budget = cls(train_size=200, epochs={"vae": 2, "anogan": 2, "vaegan": 1, "vaegan+": 4})
        budget.model["anogan"]["search_steps"] = 2
        return budget


def full_plan() -> list[tuple[int, int]]:
    """(digit, seed): one seed for every digit first, then the extra seeds of 0 and 1."""
    return [(d, 0) for d in range(10)] + [(d, s) for s in (1, 2) for d in (0, 1)]


def run_one(data: str, digit: int, seed: int, budget: Budget) -> dict:
    """Train every family for one (digit, seed) and score the test subset with every method."""
    import torch
    from sklearn.metrics import roc_auc_score

    from bench.mnist import one_class_task
    from inspector.config import FrameSpec
    from inspector.detector import Detector
    from inspector.models import FAMILIES, make_config
    from inspector.training import TrainOptions, train

    torch.set_num_threads(1)
    task = one_class_task(data, digit, train_size=budget.train_size)
    out: dict = {"digit": digit, "seed": seed, "train_frames": len(task.train), "auc": {}, "seconds": {}}
    for family in budget.epochs:
        started = time.time()
        config = make_config(family, budget.model[family])
        options = TrainOptions(epochs=budget.epochs[family], seed=seed, device="cpu")
        checkpoint = train(task.train, config, FrameSpec(), options)
        for method in FAMILIES[family].methods:
            detections = Detector(checkpoint, method, device="cpu", batch_size=64).score_arrays(task.test)
            scores = np.array([d.score for d in detections])
            out["auc"][method] = float(roc_auc_score(task.test_labels, scores))
            if digit in (0, 1):
                out.setdefault("scores", {})[method] = scores.round(6).tolist()
        out["seconds"][family] = round(time.time() - started, 1)
    if digit in (0, 1):
        out["labels"] = task.test_labels.tolist()
    return out


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return f"{np.mean(values):.3f}±{np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def render(runs: list[dict], header: dict, planned: int) -> str:
    """The Markdown results file."""
    methods = list(LABELS)
    by_digit = {d: [r for r in runs if r["digit"] == d] for d in range(10)}
    lines = [
        "# Noisy-MNIST one-class ROC-AUC: the paper's Table 1 and ours",
        "",
        f"Protocol: `../shared/benchmarks/noisy-mnist.md`. Runs finished: {len(runs)} of {planned}.",
        "",
        "| method | paper '0' | ours '0' | paper '1' | ours '1' | paper avg | ours avg | digits in avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        paper = PAPER.get(m, ("–", "–", "–"))
        digit_means = [np.mean([r["auc"][m] for r in rs]) for rs in by_digit.values() if rs]
        ours = [_mean_std([r["auc"][m] for r in by_digit[d]]) for d in (0, 1)]
        lines.append(
            f"| {LABELS[m]} `{m}` | {paper[0]} | {ours[0]} | {paper[1]} | {ours[1]} | {paper[2]} | "
            f"{_mean_std(digit_means)} | {len(digit_means)} |"
        )
    lines += [
        "",
        "Ours: mean±std over seeds per digit; the average is the mean over digits of the per-digit "
        "means (± their std over digits, as the paper's ±).",
        "",
        "## Per digit (mean over seeds; seeds in brackets)",
        "",
        "| method | " + " | ".join(f"{d} ({len(by_digit[d])})" for d in range(10)) + " |",
        "|---|" + "---|" * 10,
    ]
    for m in methods:
        cells = [_mean_std([r["auc"][m] for r in by_digit[d]]) for d in range(10)]
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    seconds = {f: np.mean([r["seconds"][f] for r in runs]) for f in runs[0]["seconds"]} if runs else {}
    header["mean seconds per run (training + scoring 2000 frames)"] = ", ".join(
        f"{f} {v:.0f}" for f, v in seconds.items()
    )
    lines += ["", "## Run", ""] + [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", SELECTION]
    return "\n".join(lines) + "\n"


def plot_roc(runs: list[dict], path: Path) -> None:
    """ROC curves of every method for normal digit 0 and 1 (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, digit in zip(axes, (0, 1), strict=True):
        run = next((r for r in runs if r["digit"] == digit and r["seed"] == 0), None)
        if run is None:
            continue
        for method, scores in run["scores"].items():
            fpr, tpr, _ = roc_curve(run["labels"], scores)
            ax.plot(fpr, tpr, label=f"{method} (AUC {run['auc'][method]:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(title=f"normal digit {digit}, seed 0", xlabel="false positive rate")
        ax.set(ylabel="true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_table(data: str, quick: bool = False, jobs: int = 2, command: str = "", out: Path = RESULTS) -> str:
    """Run the plan (or the quick one), writing results as they come; returns the Markdown."""
    budget = Budget()
    plan = full_plan()
    name = "paper_table"
    if quick:
        budget, plan, name = Budget.quick(), [(0, 0)], "paper_table_quick"
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = out / f"{name}_runs"
    runs_dir.mkdir(exist_ok=True)
    started = time.time()
    header = {
        "command": f"`{command}`",
        "git commit": git_commit(),
        "machine": f"{os.cpu_count()} CPU cores, no GPU; {jobs} runs at a time, one torch thread each",
        "training size": f"first {budget.train_size} noisy training images of the normal digit "
        "(90% fitted, 10% held out for the validation loss and threshold)",
        "epochs": json.dumps(budget.epochs),
        "model settings (besides ModelConfig defaults)": json.dumps(budget.model),
    }
    runs: list[dict] = []

    def write() -> str:
        header["wall time"] = f"{(time.time() - started) / 60:.1f} min"
        text = render(runs, header, len(plan))
        (out / f"{name}.md").write_text(text)
        plot_roc(runs, out / f"{name}_roc.png")
        return text

    def launch(digit: int, seed: int) -> dict:
        path = runs_dir / f"digit{digit}-seed{seed}.json"
        one = [sys.executable, "-m", "bench.paper_table", "--data", str(Path(data).resolve())]
        one += ["--one", str(digit), str(seed), "--json", str(path.resolve())] + (
            ["--quick"] if quick else []
        )
        subprocess.run(one, check=True, cwd=ROOT)
        return json.loads(path.read_text())

    with ThreadPoolExecutor(jobs) as pool:
        for future in as_completed([pool.submit(launch, d, s) for d, s in plan]):
            run = future.result()
            runs.append(run)
            print(f"digit {run['digit']} seed {run['seed']}: {json.dumps(run['auc'])}", flush=True)
            write()
    return write()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="MNIST-format IDX folder")
    parser.add_argument("--quick", action="store_true", help="digit 0, one seed, small budget")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--one", nargs=2, type=int, metavar=("DIGIT", "SEED"), help="a single run")
    parser.add_argument("--json", help="where --one writes its result")
    args = parser.parse_args(argv)
    if args.one:
        budget = Budget.quick() if args.quick else Budget()
        Path(args.json).write_text(json.dumps(run_one(args.data, *args.one, budget)))
        return
    command = shlex.join(["python", "-m", "bench.paper_table", *sys.argv[1:]])
    print(run_table(args.data, quick=args.quick, jobs=args.jobs, command=command))


if __name__ == "__main__":
    main()
