"""The benchmarks of the default command (issue 18): their pieces, quickly (the runs take hours)."""

from __future__ import annotations

import numpy as np

from bench import depth_default, mnist_default, scoring_cost, training_time
from bench.default_path import command_defaults
from inspector.cli import train


def test_the_default_path_uses_the_command_s_own_defaults() -> None:
    options = command_defaults()
    defaults = {p.name: p.default for p in train.params}
    assert (options.epochs, options.min_epoch_frames, options.seed) == (
        defaults["epochs"],
        defaults["min_epoch_frames"],
        defaults["seed"],
    )
    assert defaults["method"] is None  # no method: the label-free choice


def _digit(d: int, auc: float, knn: float) -> dict:
    return {
        "digit": d,
        "family": "glimpse-memory",
        "method": "glimpse-mean",
        "auc": auc,
        "auc_by_method": {"glimpse-mean": auc, "glimpse-max": 0.5},
        "estimate": 0.9,
        "peers": {"blur_pca": 0.6, "blur_knn": 0.6, "glimpse_knn": knn},
        "train_cpu_seconds": 60,
        "train_wall_seconds": 60,
        "commit": "abc",
        "machine": "m",
        "host": "h",
        "finished_at": "t",
        "command": "c",
    }


def test_mnist_report_checks_both_parts_of_the_goal() -> None:
    met = mnist_default.render([_digit(d, 0.97, 0.9) for d in range(10)])
    assert "**Goal** (average ≥ 0.95 and every digit ≥ glimpse-kNN): met" in met
    short = mnist_default.render([_digit(d, 0.97, 0.98 if d == 4 else 0.9) for d in range(10)])
    assert "**not met**" in short and "below glimpse-kNN: [4]" in short
    assert "**not met**" in mnist_default.render([_digit(0, 0.99, 0.9)])  # 1 of 10 digits


def test_depth_and_training_time_reports_render() -> None:
    fold = {
        "direction": "palm",
        "fold": 0,
        "train_files": ["a"] * 6,
        "auc": 1.0,
        "family": "patch-memory",
        "method": "patch-max",
        "frame_shape": [222, 296],
        "selection": {"estimate": 0.8},
        "peers": {"blur_pca": 0.5, "blur_knn": 0.5, "glimpse_knn": 0.5},
        "training": {"cpu_seconds": 60, "wall_seconds": 90},
        "commit": "abc",
        "machine": "m",
        "finished_at": "t",
    }
    assert "palm, mean of 1 folds" in depth_default.render([fold]) and "**not met**" in depth_default.render(
        [fold]
    )
    plain = depth_default.render([fold], "plain")
    assert "told nothing" in plain and "--out M` (not even" in plain and "measured_raw_range" in plain
    run = {
        "case": "tiles-10",
        "frames": 10,
        "chosen": "patch-memory",
        "wall_seconds": 200,
        "cpu_seconds": 300,
        "commit": "abc",
        "machine": "m",
        "load_before": 1.0,
        "load_after": 1.0,
        "finished_at": "t",
        "bench_command": "c",
    }
    assert "yes by CPU ÷ 2, not by wall" in training_time.render([run])


def test_scoring_cost_times_a_full_size_memory() -> None:
    checkpoint = scoring_cost.checkpoint_for("patch-max", (32, 48), {})
    assert checkpoint.state_dict["memory.bank"].shape == (8192, 152)
    assert scoring_cost.time_row("glimpse-max", (32, 32), {}, frames=4, repeats=1) > 0


def test_map_weighting_variants_keep_the_map_and_quiet_normal_frames() -> None:
    from bench.map_weighting import variants

    maps = np.ones((4, 3))
    found = variants(maps, np.array([0.0, 1.0, 5.0, 6.0]), normal=2)
    assert np.array_equal(found["the map"], maps)
    weighted = found["× sigmoid(z)"]
    assert weighted.shape == maps.shape and weighted[0, 0] < weighted[3, 0]
