"""A stand-in watcher for test_hot_path: starts a process as the scorers start (``_die_with_parent``
first) from a thread that ends once the process is ready, prints its pid and waits to be killed."""

import multiprocessing
import sys
import threading
import time
from typing import Any

from inspector.pipeline.executors import _die_with_parent


def child(ready: Any) -> None:  # ready: a multiprocessing Event
    _die_with_parent()
    ready.set()
    time.sleep(120)


def start(process: Any, ready: Any) -> None:
    process.start()
    ready.wait(60)


if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=child, args=(ready,))
    starter = threading.Thread(target=start, args=(process, ready))  # ends once the child is ready
    starter.start()
    starter.join()
    print(process.pid, flush=True)
    sys.stdout.close()
    time.sleep(120)
