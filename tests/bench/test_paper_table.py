"""The noisy-MNIST table's bookkeeping: the plan, resumable and shardable runs, one stored file each."""

from __future__ import annotations

import json
from pathlib import Path

from bench import paper_selection as selection
from bench import paper_table as table
from bench.convergence import StoppingRule
from bench.peers import PEERS
from tests.bench.test_mnist import fake_mnist


def test_plan_puts_seed_zero_of_the_vaegans_first_and_has_three_seeds_for_the_families() -> None:
    plan = table.plan()
    assert len(plan) == len(set(plan))
    assert {r.method for r in plan[:30]} == set(PEERS)
    assert plan[30:34] == [
        table.Run(0, 0, "vaegan"),
        table.Run(0, 0, "vaegan+"),
        table.Run(1, 0, "vaegan"),
        table.Run(1, 0, "vaegan+"),
    ]
    assert {(r.seed, r.method) for r in plan[30:50]} == {(0, "vaegan"), (0, "vaegan+")}
    for method in table.SETTINGS:
        assert {(r.digit, r.seed) for r in plan if r.method == method} == {
            (d, s) for d in range(10) for s in table.SEEDS
        }
    for peer in PEERS:  # deterministic: one seed
        assert {(r.digit, r.seed) for r in plan if r.method == peer} == {(d, 0) for d in range(10)}


def test_pending_skips_stored_runs_and_shards_disjointly(tmp_path: Path) -> None:
    first = table.plan()[30]
    table.store({"auc": {}}, first.path(tmp_path))
    assert not list(first.path(tmp_path).parent.glob("*.partial"))
    left = list(table.pending(tmp_path))
    assert first not in left and len(left) == len(table.plan()) - 1
    shards = [set(table.pending(tmp_path, (i, 3))) for i in range(3)]
    assert set.union(*shards) == set(left) and sum(map(len, shards)) == len(left)
    assert {r.method for r in table.pending(tmp_path, methods=["blur_knn"])} == {"blur_knn"}
    assert {r.seed for r in table.pending(tmp_path, seeds=[2])} == {2}
    assert "1 of 150 runs done" in table.status(tmp_path)
    assert "| `vaegan` | 0 | 1 of 10 | 1 2 3 4 5 6 7 8 9 |" in table.status(tmp_path)


def test_a_job_trains_to_the_rule_and_stores_curves_and_every_score(tmp_path: Path, monkeypatch) -> None:
    fake_mnist(tmp_path, compress=True, n=60)
    monkeypatch.setitem(table.SETTINGS, "vaegan+", {"width": 8, "latent_dim": 8, "batch_size": 8})
    rule = StoppingRule(patience=1, max_epochs=2, normals=2)
    result = table.run_job(str(tmp_path), table.Run(3, 0, "vaegan+"), rule, "cpu", train_size=6)
    assert set(result["auc"]) == {"vaegan+", "vaegan-attn+", table.GRADCAM_ON_OURS}
    assert 1 <= result["best_epoch"] <= result["epochs_run"] <= 2
    curves = result["curves"]
    assert len(curves["validation_auroc"]["vaegan-attn+"]) == result["epochs_run"]
    assert len(curves["losses"]["feat"]) == result["epochs_run"] and "val" in curves["losses"]
    assert result["cpu_seconds"] > 0 and result["rule"]["patience"] == 1
    peer = table.run_job(str(tmp_path), table.Run(3, 0, "glimpse_knn"), rule, "cpu", train_size=6)
    assert set(peer["auc"]) == {"glimpse_knn"} and "curves" not in peer
    json.dumps(result)  # storable as it is


def test_validation_set_uses_unseen_training_images_only(tmp_path: Path) -> None:
    import numpy as np

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
