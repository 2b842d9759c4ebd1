"""The Celery app with slow scoring, so a test can kill a worker while it holds a claimed batch.

Run as ``celery -A tests.pipeline.slow_worker worker``; nothing else imports it.
"""

from __future__ import annotations

import tests.pipeline.slow_scoring  # noqa: F401 - for its effect
from workers.app import app

__all__ = ["app"]
