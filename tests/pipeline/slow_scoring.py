"""Imported for its effect: every batch this process scores takes 2 s longer, so a test can kill
the process while it holds a claimed batch (a Celery worker: slow_worker; a watcher:
``python -c "import tests.pipeline.slow_scoring; ..."``)."""

from __future__ import annotations

import time

import numpy as np

from inspector.detector import Detection, Detector

_score_arrays = Detector.score_arrays


def _slowly(self: Detector, frames: np.ndarray) -> list[Detection]:
    time.sleep(2.0)
    return _score_arrays(self, frames)


Detector.score_arrays = _slowly  # type: ignore[method-assign]
