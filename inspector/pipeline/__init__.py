"""The pipeline: a watcher registers frames, an executor scores them, results land in SQL.

A frame's life, each step a committed state in the ``frames`` table::

    pending ──queue──▶ queued ──claim──▶ processing ──▶ done         (file → data_dir/archive/)
                                                   └──▶ quarantined  (file → data_dir/quarantine/)

- The row is committed (pending) before anything is queued; the watcher queues pending
  frames, and frames in flight with nobody at work on them, at start, at every rescan and
  (with workers) every half ``watch.claim_lease_seconds``. The inline executor is the only
  scorer of its database, so at start it takes back everything in flight at once.
- A claim is a compare-and-set update, and the result insert does nothing when the frame
  already has a result from that model version and method: delivery may repeat, scoring
  does not.
  A claim records its delivery (the Celery task id), so when a worker process dies the
  redelivered message (late ack) resumes its frames at once. A worker renews its claim while
  it scores; a claim not renewed for ``claim_lease_seconds`` (the worker died with its host)
  is handed out again, by the database's clock (not a host's). A queued frame is sent again
  when its message may be lost: the send failed, the broker restarted (a new Redis run id),
  the watcher started; else after ``stale_seconds``.
- A frame whose worker died ``watch.max_attempts`` times is quarantined, not retried forever.
  A frame whose worker died is retried alone, so a frame that kills workers cannot use up its
  batch-mates' attempts: a Celery message that comes back scores its frames one by one,
  counting an attempt for a frame only at its turn; embedded, such a frame (a suspect) is
  scored in a process of its own, and only that process's death, seen by the watcher, counts,
  never the watcher's own (a killed watcher quarantines nothing).
- Files move only after the commit that makes them done or quarantined; a crash in
  between leaves the file where it was, and the next rescan moves it.
"""
