"""A suspect scorer (``executors._isolated``) whose process dies whenever it scores a frame whose
name says "poison", as a decoder's crash on a malicious file would. A test puts it in place of
the real one; the spawned process imports this module to run it."""

from __future__ import annotations

import os

from inspector.config import Settings
from inspector.pipeline import executors, process
from inspector.pipeline.process import Outcome

_score = process._score


def _dies_on_poison(settings, frames, counted=True):  # noqa: ANN001, ANN202 - process._score's
    if any("poison" in frame.path for frame in frames):
        os._exit(1)
    return _score(settings, frames, counted)


def isolated(settings: Settings, claimant: str) -> Outcome:
    process._score = _dies_on_poison
    return executors._isolated(settings, claimant)
