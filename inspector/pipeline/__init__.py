"""The pipeline: a watcher registers frames, an executor scores them, results land in SQL."""
