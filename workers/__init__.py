"""Celery workers: the distributed face of the pipeline (``celery -A workers.app worker``)."""
