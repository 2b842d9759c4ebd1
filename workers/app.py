"""The Celery app for ``celery -A workers.app``: the settings of INSPECTOR_CONFIG and the
INSPECTOR_* environment, as for every other face (the app itself: inspector.pipeline.distributed)."""

from inspector.config import load_settings
from inspector.pipeline.distributed import make_app

app = make_app(load_settings())
