"""Celery workers, the distributed face of the pipeline.

Start one per GPU with ``inspector worker [--gpu N]``, which is
``celery -A workers.app worker --queues gpu --concurrency 1``; without a GPU it scores on the CPU.
"""
