"""Imported for its effect: every batch this process scores takes 2 s longer (``SLOW_SCORING_SECONDS``
if set), so a test can kill the process while it holds a claimed batch (a Celery worker:
slow_worker; a watcher: ``python -c "import tests.pipeline.slow_scoring; ..."``)."""

from __future__ import annotations

import os
import time

import numpy as np

from inspector.detector import Detection, Detector

_score_arrays = Detector.score_arrays
_DELAY = float(os.environ.get("SLOW_SCORING_SECONDS", "2.0"))


def _slowly(self: Detector, frames: np.ndarray) -> list[Detection]:
    time.sleep(_DELAY)
    return _score_arrays(self, frames)


Detector.score_arrays = _slowly  # type: ignore[method-assign]
