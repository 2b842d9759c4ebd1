"""Threshold calibration from operators' labels: confusion counts, ROC / PR curves, target recall.

A frame is flagged when ``score > threshold`` (as the detector decides), and every number
here uses that same rule so the dashboard's promise matches what the pipeline will do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Sample = tuple[float, str]  # (score, label "anomaly" | "normal")


@dataclass(frozen=True)
class Operating:
    """What a threshold does on the labelled frames."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0


def operating(samples: list[Sample], threshold: float) -> Operating:
    tp = sum(1 for s, label in samples if label == "anomaly" and s > threshold)
    fp = sum(1 for s, label in samples if label == "normal" and s > threshold)
    anomalies = sum(1 for _, label in samples if label == "anomaly")
    return Operating(threshold, tp, fp, anomalies - tp, len(samples) - anomalies - fp)


def curve(samples: list[Sample]) -> list[Operating]:
    """Operating points from "flag nothing" to "flag everything", one per distinct score."""
    scores = sorted({s for s, _ in samples}, reverse=True)
    if not scores:
        return []
    cuts = [math.inf] + [math.nextafter(s, -math.inf) for s in scores]
    return [operating(samples, t) for t in cuts]


def roc_auc(points: list[Operating]) -> float:
    """Area under the ROC curve by trapezoids (points ordered by falling threshold)."""
    return sum((b.fpr - a.fpr) * (a.recall + b.recall) / 2 for a, b in zip(points, points[1:], strict=False))


def threshold_for_recall(samples: list[Sample], target: float) -> float | None:
    """The highest threshold whose recall on labelled anomalies is at least ``target``.

    It sits halfway between the lowest anomaly that must still be flagged and the next
    lower labelled score, so small score noise does not flip the labelled frames.
    """
    anomalies = sorted(s for s, label in samples if label == "anomaly")
    if not anomalies:
        return None
    missable = math.floor((1 - target) * len(anomalies) + 1e-9)
    lowest_kept = anomalies[min(missable, len(anomalies) - 1)]
    below = [s for s, _ in samples if s < lowest_kept]
    if below:
        return (max(below) + lowest_kept) / 2
    return math.nextafter(lowest_kept, -math.inf)
