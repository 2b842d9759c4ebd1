"""Celery's own command line's entry into inspector: ``celery -A workers.app ...``.

``inspector worker [--gpu N]`` starts a worker without it (its app comes from
inspector.pipeline.distributed, built from the command's settings); this entry is for
Celery's tools, such as the compose file's ``celery -A workers.app inspect ping``.
"""
