"""The calibration page's labelled scores: read in full once, then only what changed.

Reading 100 000 labelled scores from SQL costs several times all of the page's math, and an
operator opens the page again right after labelling more frames. So the scores of each (model
version, method, source) are kept by frame, with the stamp they were read at (newest review,
number of reviews, newest result); a page whose stamp moved on reads only the frames labelled
or scored since, and reads everything again only when a review was deleted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from inspector.pipeline.thresholds import Labelled
from inspector.store import review as store


@dataclass
class _Scores:
    stamp: store.LabelsStamp
    index: dict[int, int] = field(default_factory=dict)  # frame id -> position in the lists
    scores: list[float] = field(default_factory=list)
    anomalous: list[bool] = field(default_factory=list)
    labelled: Labelled | None = None

    def update(self, rows: list[tuple[int, float, str]]) -> None:
        for frame_id, score, label in rows:
            at = self.index.setdefault(frame_id, len(self.scores))
            if at == len(self.scores):
                self.scores.append(score)
                self.anomalous.append(label == "anomaly")
            else:
                self.scores[at], self.anomalous[at] = score, label == "anomaly"
        self.labelled = Labelled.from_arrays(
            np.array(self.scores, np.float64), np.array(self.anomalous, bool)
        )


class LabelledScores:
    """Labelled scores by (database, model version, method, source), kept up to date by what changed."""

    def __init__(self, size: int = 16):
        self.size = size
        self._kept: dict[tuple[str, str, str, str | None], _Scores] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, model_version: str, method: str, source: str | None) -> Labelled:
        key = (str(session.get_bind().url), model_version, method, source)
        stamp = store.labels_stamp(session)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept.stamp == stamp and kept.labelled is not None:
            return kept.labelled
        if kept is not None and stamp.only_added_since(session, kept.stamp):
            since = (kept.stamp.review_id, kept.stamp.result_id)
            fresh = _Scores(stamp, dict(kept.index), list(kept.scores), list(kept.anomalous))
            fresh.update(store.labelled_frames(session, model_version, method, source, since))
        else:
            fresh = _Scores(stamp)
            fresh.update(store.labelled_frames(session, model_version, method, source))
        with self._lock:
            self._kept.pop(key, None)
            while len(self._kept) >= self.size:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = fresh
        assert fresh.labelled is not None
        return fresh.labelled
