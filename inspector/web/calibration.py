"""Threshold calibration from operators' labels: confusion counts, ROC / PR curves, target recall.

A frame is flagged when ``score > threshold`` (as the detector decides), and every number
here uses that same rule so the dashboard's promise matches what the pipeline will do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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


class Labelled:
    """Labelled scores sorted once by falling score: every number of the calibration page comes
    from this one O(n log n) sort and its cumulative sums (no pass over the samples per point)."""

    def __init__(self, samples: list[Sample]):
        scores = np.fromiter((score for score, _ in samples), np.float64, len(samples))
        anomalous = np.fromiter((label == "anomaly" for _, label in samples), bool, len(samples))
        self._sort(scores, anomalous)

    @classmethod
    def from_arrays(cls, scores: np.ndarray, anomalous: np.ndarray) -> Labelled:
        labelled = cls.__new__(cls)
        labelled._sort(scores, anomalous)
        return labelled

    def _sort(self, scores: np.ndarray, anomalous: np.ndarray) -> None:
        order = np.argsort(-scores, kind="stable")
        self.scores, self.anomalous = scores[order], anomalous[order]
        self.positives = int(anomalous.sum())
        self.negatives = len(scores) - self.positives
        self._tp = np.r_[0, np.cumsum(self.anomalous)]  # true positives among the first k scores
        # The last sample of each run of equal scores (none for no samples).
        last = np.append(self.scores[1:] != self.scores[:-1], True)[: len(scores)]
        counts = np.r_[0, np.flatnonzero(last) + 1]  # flag nothing, then down to each distinct score
        # The threshold that flags the scores down to each distinct score: just below it, as
        # ``score > threshold`` decides; the first (infinity) flags nothing.
        self.cuts = np.r_[np.inf, np.nextafter(self.scores[last], -np.inf)]
        self.tp = self._tp[counts]
        self.fp = counts - self.tp

    def _point(self, threshold: float, tp: int, fp: int) -> Operating:
        return Operating(
            float(threshold), int(tp), int(fp), self.positives - int(tp), self.negatives - int(fp)
        )

    def operating(self, threshold: float) -> Operating:
        flagged = int(np.searchsorted(-self.scores, -threshold, side="left"))  # scores > threshold
        tp = int(self._tp[flagged])
        return self._point(threshold, tp, flagged - tp)

    def curve(self, max_points: int | None = None) -> list[Operating]:
        """Operating points from "flag nothing" to "flag everything", one per distinct score.

        With ``max_points``, for drawing: only the points where the false-positive rate, recall
        or precision moved to another of ``max_points`` steps (and the last), about as many as
        a chart of that many pixels can show, whatever the number of labelled frames.
        """
        if not len(self.scores):
            return []
        keep = np.arange(len(self.cuts))
        if max_points is not None and len(self.cuts) > max_points:
            flagged = self.tp + self.fp
            precision = np.where(flagged > 0, self.tp / np.maximum(flagged, 1), 1.0)
            steps = np.stack(
                [self.fp / max(self.negatives, 1), self.tp / max(self.positives, 1), precision], axis=1
            )
            cells = np.floor(steps * max_points)
            moved = np.r_[True, np.any(cells[1:] != cells[:-1], axis=1)]
            moved[-1] = True
            keep = np.flatnonzero(moved)
        return [self._point(self.cuts[i], self.tp[i], self.fp[i]) for i in keep]

    def auc(self) -> float:
        """Area under the ROC curve through every operating point (a drawn curve may be thinned)."""
        recall, fpr = self.tp / max(self.positives, 1), self.fp / max(self.negatives, 1)
        return float(np.sum(np.diff(fpr) * (recall[1:] + recall[:-1]) / 2))

    def threshold_for_recall(self, target: float) -> float | None:
        """The highest threshold whose recall on labelled anomalies is at least ``target``.

        It sits halfway between the lowest anomaly that must still be flagged and the next
        lower labelled score, so small score noise does not flip the labelled frames.
        """
        anomalies = self.scores[self.anomalous][::-1]  # rising
        if not len(anomalies):
            return None
        missable = math.floor((1 - target) * len(anomalies) + 1e-9)
        lowest_kept = float(anomalies[min(missable, len(anomalies) - 1)])
        below = self.scores[self.scores < lowest_kept]  # falling: the first is the highest
        if len(below):
            return (float(below[0]) + lowest_kept) / 2
        return math.nextafter(lowest_kept, -math.inf)


def operating(samples: list[Sample], threshold: float) -> Operating:
    return Labelled(samples).operating(threshold)


def curve(samples: list[Sample], max_points: int | None = None) -> list[Operating]:
    """See :meth:`Labelled.curve`."""
    return Labelled(samples).curve(max_points)


def roc_auc(points: list[Operating]) -> float:
    """Area under the ROC curve by trapezoids (points ordered by falling threshold)."""
    return sum((b.fpr - a.fpr) * (a.recall + b.recall) / 2 for a, b in zip(points, points[1:], strict=False))


def auc(samples: list[Sample]) -> float:
    return Labelled(samples).auc()


def threshold_for_recall(samples: list[Sample], target: float) -> float | None:
    """See :meth:`Labelled.threshold_for_recall`."""
    return Labelled(samples).threshold_for_recall(target)


def as_submitted(shown: float, exact: float | None) -> float:
    """The threshold a form meant: its field shows the exact value to 4 significant digits
    (``exact`` rides along hidden), so a value left as shown means the exact one."""
    return exact if exact is not None and f"{shown:.4g}" == f"{exact:.4g}" else shown
