"""The calibration math: flags by the one rule (``is_anomaly``: score above the threshold)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from inspector.pipeline.thresholds import Labelled, Operating, Sample, is_anomaly


def samples(normals: list[float], anomalies: list[float]) -> list[Sample]:
    return [(s, "normal") for s in normals] + [(s, "anomaly") for s in anomalies]


def operating(data: list[Sample], threshold: float) -> Operating:
    return Labelled(data).operating(threshold)


def curve(data: list[Sample], max_points: int | None = None) -> list[Operating]:
    return Labelled(data).curve(max_points)


def threshold_for_recall(data: list[Sample], target: float) -> float | None:
    return Labelled(data).threshold_for_recall(target)


def roc_auc(points: list[Operating]) -> float:
    """Trapezoids through drawn points (by falling threshold), to compare with the exact area."""
    return sum((b.fpr - a.fpr) * (a.recall + b.recall) / 2 for a, b in zip(points, points[1:], strict=False))


def brute_force(data: list[Sample], threshold: float) -> Operating:
    """What a threshold does, one sample at a time by the rule itself."""
    tp = sum(1 for s, label in data if label == "anomaly" and is_anomaly(s, threshold))
    fp = sum(1 for s, label in data if label == "normal" and is_anomaly(s, threshold))
    anomalies = sum(1 for _, label in data if label == "anomaly")
    return Operating(threshold, tp, fp, anomalies - tp, len(data) - anomalies - fp)


def test_operating_counts() -> None:
    point = operating(samples([0.1, 0.6], [0.5, 0.9]), 0.5)
    assert point == brute_force(samples([0.1, 0.6], [0.5, 0.9]), 0.5)
    assert (point.tp, point.fp, point.fn, point.tn) == (1, 1, 1, 1)
    assert point.recall == point.precision == point.fpr == 0.5


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (1.0, (0.3 + 0.4) / 2),  # keep every anomaly: just under the lowest one
        (0.99, (0.3 + 0.4) / 2),  # 1% of 4 anomalies rounds down to missing none
        (0.75, (0.6 + 0.7) / 2),  # may miss one: just under the second lowest, above the normal at 0.6
        (0.5, (0.8 + 0.85) / 2),
    ],
)
def test_threshold_for_recall_is_the_highest_that_meets_the_target(target: float, expected: float) -> None:
    data = samples([0.1, 0.3, 0.6, 0.8], [0.4, 0.7, 0.85, 0.95])
    threshold = threshold_for_recall(data, target)
    assert threshold == pytest.approx(expected)
    assert operating(data, threshold).recall >= target


def test_threshold_for_recall_edge_cases() -> None:
    assert threshold_for_recall(samples([0.1], []), 0.99) is None
    lowest = threshold_for_recall(samples([], [0.2, 0.5]), 1.0)
    assert lowest < 0.2 and math.isclose(lowest, 0.2)
    assert operating(samples([0.2], [0.2]), threshold_for_recall(samples([0.2], [0.2]), 1.0)).recall == 1.0


def test_curve_and_auc() -> None:
    separable = samples([0.1, 0.2], [0.8, 0.9])
    points = curve(separable)
    assert (points[0].tp, points[0].fp) == (0, 0) and (points[-1].fn, points[-1].tn) == (0, 0)
    assert roc_auc(points) == pytest.approx(1.0)
    assert roc_auc(curve(samples([0.5, 0.5], [0.5, 0.5]))) == pytest.approx(0.5)
    assert curve([]) == []


def random_samples(n: int, seed: int = 0, decimals: int = 2) -> list[Sample]:
    """Scores with ties (rounded to ``decimals``), anomalies scoring higher on average."""
    rng = np.random.default_rng(seed)
    anomalous = rng.random(n) < 0.3
    scores = np.round(rng.normal(anomalous * 1.0, 1.0), decimals)
    return [(float(s), "anomaly" if a else "normal") for s, a in zip(scores, anomalous, strict=True)]


@pytest.mark.parametrize("n", [1, 7, 500, 5000])
def test_curve_matches_scikit_learn(n: int) -> None:
    data = random_samples(n, seed=n)
    labels = [label == "anomaly" for _, label in data]
    scores = [s for s, _ in data]
    points = curve(data)
    if all(labels) or not any(labels):
        assert len(points) == len({s for s in scores}) + 1
        return
    fpr, tpr, cuts = roc_curve(labels, scores, drop_intermediate=False)
    assert np.allclose([p.fpr for p in points], fpr) and np.allclose([p.recall for p in points], tpr)
    assert points[0].threshold == math.inf and all(
        p.threshold < c for p, c in zip(points[1:], cuts[1:], strict=True)
    )
    assert Labelled(data).auc() == pytest.approx(roc_auc_score(labels, scores))
    assert roc_auc(points) == pytest.approx(roc_auc_score(labels, scores))
    for p in points[1 :: max(1, len(points) // 20)]:  # each point is what its threshold does by the rule
        assert p == operating(data, p.threshold) == brute_force(data, p.threshold)


def test_curve_for_drawing_keeps_its_shape_in_few_points() -> None:
    data = random_samples(100_000, decimals=12)
    full, drawn = curve(data), curve(data, max_points=400)
    assert len(full) == 100_001 and len(drawn) < 5 * 400  # a step of fpr, recall or precision each
    assert (drawn[0], drawn[-1]) == (full[0], full[-1])
    assert roc_auc(drawn) == pytest.approx(Labelled(data).auc(), abs=1e-3)


def test_the_rule_flags_scores_above_the_threshold_only() -> None:
    assert is_anomaly(0.51, 0.5) and not is_anomaly(0.5, 0.5) and not is_anomaly(0.49, 0.5)
