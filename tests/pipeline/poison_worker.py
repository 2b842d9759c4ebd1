"""The Celery app with a frame that kills its worker process whenever it is scored (as a
decoder's crash on a malicious file would). Run as ``celery -A tests.pipeline.poison_worker
worker``; nothing else imports it."""

from __future__ import annotations

import os

from inspector.pipeline import process
from workers.app import app

_score = process._score


def _dies_on_poison(settings, frames):  # noqa: ANN001, ANN202 - process._score's
    if any("poison" in frame.path for frame in frames):
        os._exit(1)
    return _score(settings, frames)


process._score = _dies_on_poison

__all__ = ["app"]
