"""The noisy-MNIST table's bookkeeping and its label-free validation set (the runs take an hour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import paper_selection as selection
from bench import paper_table as table
from tests.bench.test_mnist import fake_mnist


def fake_run(digit: int, seed: int, auc: float) -> dict:
    methods = ("vae", "anogan", "vaegan", "vaegan-attn", "vaegan+", "vaegan-attn+")
    return {"digit": digit, "seed": seed, "auc": dict.fromkeys(methods, auc), "seconds": {"vae": 1.0}}


def test_table_averages_seeds_then_digits() -> None:
    runs = [fake_run(d, 0, 0.5 + d / 100) for d in range(10)] + [fake_run(0, 1, 0.7)]
    text = table.render(runs, {"command": "`x`"}, planned=11)
    row = next(line for line in text.splitlines() if "`vaegan-attn+` |" in line and "ours" in line)
    cells = [c.strip() for c in row.split("|")]
    # digit 0: seeds 0.5 and 0.7 → 0.600±0.100; average of the 10 digit means.
    assert cells[3] == "0.600±0.100" and cells[5] == "0.510"
    digit_means = [0.6] + [0.5 + d / 100 for d in range(1, 10)]
    assert cells[7] == f"{np.mean(digit_means):.3f}±{np.std(digit_means):.3f}" and cells[8] == "10"
    assert ".73±.1" in text and "Runs finished: 11 of 11" in text


def test_plan_has_three_seeds_for_zero_and_one() -> None:
    plan = table.full_plan()
    assert {d for d, _ in plan} == set(range(10))
    assert sum(d == 0 for d, _ in plan) == 3 and sum(d == 1 for d, _ in plan) == 3


def test_validation_set_uses_unseen_training_images_only(tmp_path: Path) -> None:
    fake_mnist(tmp_path, compress=True, n=60)  # six images of each digit
    frames, labels = selection.validation_set(str(tmp_path), normal=4, skip=2, size=4)
    assert frames.shape == (8, 1, 84, 84)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, 1, 1, 1])
    digit = np.zeros((28, 28), np.float32)
    digit[4:22, 8:11] = 1.0  # an "L": neither flip nor mirror leaves it unchanged
    digit[19:22, 8:20] = 1.0
    rng = np.random.default_rng(0)
    for kind in selection.CORRUPTIONS:
        changed = selection.corrupt(digit, kind, rng)
        assert changed.shape == digit.shape and not np.array_equal(changed, digit)
