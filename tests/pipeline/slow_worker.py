"""The Celery app with slow scoring, so a test can kill a worker while it holds a claimed batch.

Run as ``celery -A tests.pipeline.slow_worker worker``; nothing else imports it.
"""

from __future__ import annotations

import time

import numpy as np

from inspector.detector import Detection, Detector
from workers.app import app

_score_arrays = Detector.score_arrays


def _slowly(self: Detector, frames: np.ndarray) -> list[Detection]:
    time.sleep(2.0)
    return _score_arrays(self, frames)


Detector.score_arrays = _slowly  # type: ignore[method-assign]

__all__ = ["app"]
