"""The pipeline: a watcher registers frames, an executor scores them, results land in SQL.

A frame's life, each step a committed state in the ``frames`` table::

    pending ──queue──▶ queued ──claim──▶ processing ──▶ done         (file → data_dir/archive/)
                                                   └──▶ quarantined  (file → data_dir/quarantine/)

- The row is committed (pending) before anything is queued; the watcher queues pending
  frames, and frames queued or processing for longer than ``watch.stale_seconds`` (their
  worker died), at start and at every rescan. The inline executor is the only scorer of
  its database, so at start it takes back everything in flight at once.
- A claim is a compare-and-set update, and the result insert does nothing when the frame
  already has a result from that model version and method: delivery may repeat, scoring
  does not.
  A claim records its delivery (the Celery task id), so when a worker process dies the
  redelivered message (late ack) resumes its frames at once; anything else waits out
  ``stale_seconds`` and is re-queued by the watcher.
- A frame whose worker died ``watch.max_attempts`` times is quarantined, not retried forever.
  A frame whose worker died is retried alone (embedded scorers claim it by itself; a Celery
  message that comes back scores its frames one by one, counting an attempt for a frame only
  at its turn), so a frame that kills workers cannot use up its batch-mates' attempts.
- Files move only after the commit that makes them done or quarantined; a crash in
  between leaves the file where it was, and the next rescan moves it.
"""
