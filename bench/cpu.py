"""CPU time of groups of processes over a stretch of a benchmark, read from ``/proc``.

A figure of CPU per frame means the same on any machine and under any load, where frames/s
does not: other work on a shared machine slows the wall clock, not the CPU a frame costs.
Each group is named by a function that says which processes belong to it now (asked again at
every sample, so processes that start, or a database connection opened, during the stretch
are counted; one started during it from zero).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def stat(pid: int) -> tuple[float, int] | None:
    """(user + system CPU seconds, start time in clock ticks since boot) of a process; None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS, int(fields[19])


def descendants(pids: Iterable[int]) -> set[int]:
    """Every process below these (not the processes themselves), from /proc's children lists."""
    found: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        with suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = {int(child) for child in (task / "children").read_text().split()}
                todo += children - found
                found |= children
    return found


def command_name(pid: int) -> str:
    """The process's name (``comm``): empty if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _now_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * TICKS)


Group = Callable[[], Iterable[int]]


class Meter:
    """CPU seconds spent by each group of processes between start() and stop()."""

    def __init__(self, groups: dict[str, Group]):
        self.groups = groups
        self._first: dict[str, dict[int, float]] = {}
        self._last: dict[str, dict[int, float]] = {}
        self._started = 0

    def start(self) -> None:
        self._started = _now_ticks()
        self._first = {name: {} for name in self.groups}
        self._last = {name: {} for name in self.groups}
        self.sample(first=True)

    def sample(self, first: bool = False) -> None:
        """Read the groups' processes now: a process that exits later keeps what it had spent."""
        for name, members in self.groups.items():
            for pid in set(members()):
                read = stat(pid)
                if read is None:
                    continue
                cpu, started = read
                if pid not in self._first[name]:  # a process born during the stretch counts from 0
                    self._first[name][pid] = cpu if first or started < self._started else 0.0
                self._last[name][pid] = cpu

    def stop(self) -> dict[str, float]:
        """CPU seconds of each group since start()."""
        self.sample()
        return {
            name: sum(cpu - self._first[name][pid] for pid, cpu in last.items())
            for name, last in self._last.items()
        }
