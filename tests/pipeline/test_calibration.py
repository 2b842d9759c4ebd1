"""The calibration math: flags by the one rule (``is_anomaly``: score above the threshold)."""

from __future__ import annotations

import math

import pytest

from inspector.pipeline.thresholds import curve, is_anomaly, operating, roc_auc, threshold_for_recall


def samples(normals: list[float], anomalies: list[float]) -> list[tuple[float, str]]:
    return [(s, "normal") for s in normals] + [(s, "anomaly") for s in anomalies]


def test_operating_counts() -> None:
    point = operating(samples([0.1, 0.6], [0.5, 0.9]), 0.5)
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


def test_the_rule_flags_scores_above_the_threshold_only() -> None:
    assert is_anomaly(0.51, 0.5) and not is_anomaly(0.5, 0.5) and not is_anomaly(0.49, 0.5)
