"""Does the label-free validation tell the glimpse memory from pixel-space glimpse-kNN? (issue 18)

On objects the default chooses among glimpse-memory methods on synthetic anomalies made from
held-out normal frames. The 20-line peer glimpse-kNN (``peers.glimpse_knn``) beats the glimpse
memory on some object sets and loses on others (noisy MNIST: behind on every digit but 1; the UCI
digits of ``uci_digits_default``: ahead on all). This measures, from the training frames alone
(the split and the synthetic anomalies ``inspector train`` uses: 10% held out), each one's
validation ROC-AUC, so that a candidate built on glimpse-kNN can be judged before it is built:
where the validation orders the two as the test does, the choice could pick it label-free.

    python -m bench.object_validation --data ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bench.mnist import one_class_task
from bench.mnist_default import TRAIN_SIZE
from bench.peers import glimpse_knn
from bench.provenance import git_commit
from bench.uci_digits_default import task as uci_task
from inspector.detector import method_scores
from inspector.models import family_named, make_config
from inspector.selection import auroc
from inspector.synthetic import anomalies
from inspector.training import split_validation

REPORT = Path(__file__).resolve().parent / "results" / "object_validation.md"


def validation(frames: np.ndarray) -> tuple[int, float, float]:
    """Held-out frames, and the validation ROC-AUC of glimpse-kNN and of ``glimpse-mean`` on them."""
    seen, held = split_validation(len(frames), 0.1, 0)
    synthetic, _kinds = anomalies(frames[held], frames[seen], seed=0)
    frames_in = np.concatenate([frames[held], synthetic])
    labels = np.repeat([0, 1], [len(held), len(synthetic)])
    config = make_config("glimpse-memory", {"channels": 1, "image_size": frames.shape[-1]})
    model = family_named("glimpse-memory").model(config).eval()
    model.fit_normal_statistics(torch.from_numpy(frames[held]), torch.from_numpy(frames[seen]))
    memory = method_scores(model, ["glimpse-mean"], frames_in, 64, torch.device("cpu"))["glimpse-mean"]
    knn = glimpse_knn(frames[seen], frames_in)
    return len(held), auroc(labels, knn), auroc(labels, memory)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/mnist", help="MNIST-format IDX folder")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    sets = {
        "UCI digits (`uci_digits_default`)": uci_task,
        "noisy MNIST (`mnist_default`)": lambda d: one_class_task(args.data, d, train_size=TRAIN_SIZE),
    }
    lines = [
        "# Label-free validation of glimpse-kNN against the glimpse memory (issue 18)",
        "",
        (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "",
        "| set | held out | " + " | ".join(f"digit {d}" for d in range(10)) + " |",
        "|---|---|" + "---|" * 10,
    ]
    for name, task in sets.items():
        figures = [validation(task(digit).train) for digit in range(10)]
        cells = " | ".join(f"{knn:.3f} / {memory:.3f}" for _held, knn, memory in figures)
        lines.append(f"| {name}: glimpse-kNN / `glimpse-mean` | {figures[0][0]} | {cells} |")
        print(lines[-1], flush=True)
    lines += [
        "",
        f"- command: `{shlex.join(['python', '-m', 'bench.object_validation', *sys.argv[1:]])}`",
        f"- commit {git_commit()}, host {platform.node()}, {platform.machine()}, {torch.get_num_threads()} "
        f"torch threads, no GPU; wall {time.time() - started:.0f} s; "
        f"finished {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
    ]
    REPORT.write_text("\n".join(lines) + "\n")
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
