"""The calibration page's labelled scores: read in full once, then only what changed.

Reading 100 000 labelled scores from SQL costs several times all of the page's math, and an
operator opens the page again right after labelling more frames. So the scores of each (model
version, method, source) are kept by frame, with the stamp they were read at (newest review,
number of reviews, newest result); a page whose stamp moved on reads only the frames labelled
or scored since, and reads everything again only when a review was deleted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from inspector.pipeline.thresholds import Labelled
from inspector.store import review as store

Rows = list[tuple[int, float, bool | int]]  # (frame id, score, anomaly) as store.labelled_frames reads them


def _columns(rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(rows)
    return (
        np.fromiter((row[0] for row in rows), np.int64, n),
        np.fromiter((row[1] for row in rows), np.float64, n),
        np.fromiter((row[2] for row in rows), bool, n),
    )


@dataclass
class _Scores:
    """The labelled scores of one (model version, method, source) as read at ``stamp``."""

    stamp: store.LabelsStamp
    frame_ids: np.ndarray
    scores: np.ndarray
    anomalous: np.ndarray

    def __post_init__(self) -> None:
        self.labelled = Labelled.from_arrays(self.scores, self.anomalous)

    @classmethod
    def read(cls, stamp: store.LabelsStamp, rows: Rows) -> _Scores:
        return cls(stamp, *_columns(rows))

    def updated(self, stamp: store.LabelsStamp, rows: Rows) -> _Scores:
        """These scores with the frames of ``rows`` (labelled or scored since) read anew."""
        frame_ids, scores, anomalous = _columns(rows)
        kept = ~np.isin(self.frame_ids, frame_ids)
        return _Scores(
            stamp,
            np.concatenate([self.frame_ids[kept], frame_ids]),
            np.concatenate([self.scores[kept], scores]),
            np.concatenate([self.anomalous[kept], anomalous]),
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
        if kept is not None and kept.stamp == stamp:
            return kept.labelled
        if kept is not None and stamp.only_added_since(session, kept.stamp):
            since = (kept.stamp.review_id, kept.stamp.result_id)
            fresh = kept.updated(stamp, store.labelled_frames(session, model_version, method, source, since))
        else:
            fresh = _Scores.read(stamp, store.labelled_frames(session, model_version, method, source))
        with self._lock:
            self._kept.pop(key, None)
            while len(self._kept) >= self.size:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = fresh
        return fresh.labelled
