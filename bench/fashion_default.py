"""Unseen objects of another kind: Fashion-MNIST through the default path, noisy-MNIST protocol.

Issue 18 judges the default on data sets of each kind the team does not have, among them "another
data set of the same shape (10 classes of small grey objects, same noise, scale and placement)".
Fashion-MNIST (Xiao, Rasul, Vollgraf 2017; MIT licence) is that shape: 28×28 grey images of ten
kinds of clothing (0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,
7 sneaker, 8 bag, 9 ankle boot) in MNIST's IDX files. It comes from Debian's package
``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``: /usr/share/datasets/fashion-mnist),
never downloaded by the project. The protocol is noisy MNIST's exactly
(``../shared/benchmarks/noisy-mnist.md``, ``mnist.one_class_task``: 3000 noisy training images
of the normal class, the first 2000 test images), each class: ``mnist_default.run_digits`` (the
default path's choice, beside blur-PCA, blur-kNN and glimpse-kNN on the same frames in the same run).

    python -m bench.fashion_default            # the classes not stored yet
    python -m bench.fashion_default --render   # the Markdown from the stored runs
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.mnist import one_class_task
from bench.mnist_default import TRAIN_SIZE, digits_options, run_digits

RESULTS = Path(__file__).resolve().parent / "results"
RUNS = RESULTS / "fashion_default_runs"
REPORT = RESULTS / "fashion_default.md"
FOLDER = Path("/usr/share/datasets/fashion-mnist")

INTRO = [
    "# Unseen objects: Fashion-MNIST through the default training path (issue 18)",
    "",
    "Protocol (`bench/fashion_default.py`): Fashion-MNIST (Debian's `dataset-fashion-mnist`; classes 0 "
    "T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle "
    "boot) on the noisy-MNIST protocol exactly (`../shared/benchmarks/noisy-mnist.md`: 3000 noisy "
    "training images of the normal class, the first 2000 test images). Each class (the table's "
    '"digit"): what `inspector train --data DIR --out M` does (`bench/default_path.py`), its chosen '
    "method scoring the test frames; the classic peers (`bench/peers.py`) trained and scored on the "
    "same frames in the same run. Runs: one JSON per class in `fashion_default_runs/`.",
]
KNOWN = [
    "- Unseen: no rule of the default was set while looking at this set; the first runs here "
    "(this file's runs, unless a later note says otherwise) are an unseen-data estimate.",
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FOLDER, help="Fashion-MNIST's IDX folder")
    args, classes = digits_options(parser, argv)
    run_digits(
        classes,
        lambda normal: one_class_task(args.data, normal, train_size=TRAIN_SIZE),
        RUNS,
        REPORT,
        "bench.fashion_default",
        INTRO,
        KNOWN,
    )


if __name__ == "__main__":
    main()
