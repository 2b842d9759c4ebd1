"""Where the pipeline's CPU goes: py-spy attached to its processes for one phase, summarised.

py-spy (``pip install py-spy``; attaching needs root or ptrace permission) samples every
thread of a process and its children, from outside: nothing changes in the code measured,
and its own CPU is not the pipeline's. It leaves out threads that sleep, but counts a thread
that is ready to run and waiting for a core (and one in an fsync) as busy: on a loaded
machine samples are not CPU time. So each role's samples give *shares*, and the CPU ms per
frame of a category is its share of the role's samples times the role's CPU per frame,
measured from ``/proc`` over the same phase (``bench.cpu``).

A stack is put in the category of the frame nearest its leaf that names one (a frame's
decoding inside the scoring step is decoding, not scoring); stacks naming none are the
machinery around the work (process pools, threads, Celery, interpreter start-up).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RATE = 200  # samples a second

# Function (qualified name, as py-spy prints it) -> category.
CATEGORIES: dict[str, str] = {
    "Detector.score_arrays": "model (Detector.score_arrays)",
    "map_arrays": "maps: planes",
    "map_planes": "maps: planes",
    "encode_png": "maps: PNG encoding",
    "frame_from_bytes": "decode + preprocess",
    "decode_frame": "decode + preprocess",
    "_load": "read + check the bytes (scorer)",
    "read_frames": "read + check the bytes (scorer)",
    "hash_file": "read + hash (watcher)",
    "hash_files": "read + hash (watcher)",
    "insert_frames": "register: SQL",
    "frames_by_hash": "register: SQL",
    "Watcher.register": "register: other",
    "Watcher.look": "look (stat)",
    "Watcher.scan": "scan",
    "Inotify.read": "inotify",
    "Watcher.recover": "queue + hand over (watcher)",
    "CeleryExecutor.submit": "queue + hand over (watcher)",
    "claim_next": "claim",
    "claim_frames": "claim",
    "frames_by_id": "claim",
    "insert_results": "store: results + maps SQL",
    "finish_frames": "store: close frames SQL",
    "effective_thresholds": "store: thresholds SQL",
    "queue": "store: alerts outbox SQL",
    "place_files": "archive moves",
    "move_files": "archive moves",
    "session_scope": "SQL: session, commit",
    "results_committed": "metrics",
    "frames_registered": "metrics",
}
OTHER = "other (pools, threads, Celery, start-up)"


@dataclass
class Profile:
    """Samples by role (watcher, scorers or workers) and category, and by leaf function, and the
    CPU ms per frame each role spent (measured apart) that the samples share out."""

    cpu_ms: dict[str, float]
    by_category: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_leaf: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def ms_per_frame(self, role: str, samples: int) -> float:
        """The CPU ms per frame of ``samples`` of the role's."""
        return self.cpu_ms.get(role, float("nan")) * samples / max(1, sum(self.by_category[role].values()))


def function(frame: str) -> str:
    """``Watcher.look (inspector/pipeline/watcher.py:120)`` -> ``Watcher.look``."""
    return frame.split(" (", 1)[0]


def _category(frame: str) -> str | None:
    """The category of a frame of the product's own code (``inspector/...``), if it names one."""
    name, _, where = frame.partition(" (")
    return CATEGORIES.get(name) if "inspector/" in where else None


def summarise(raw: str, role: Callable[[int], str], cpu_ms: dict[str, float]) -> Profile:
    """py-spy's raw output (``--format raw --subprocesses --threads``) as a Profile: a stack is
    the role of the process it was sampled in (the last ``process`` frame: a child's stacks
    carry its parents' frames first); ``cpu_ms`` is each role's CPU ms per frame."""
    profile = Profile(cpu_ms)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        processes = [part for part in parts if part.startswith("process ")]
        pid = int(processes[-1].removeprefix("process ").split(":", 1)[0]) if processes else 0
        frames_ = [frame for frame in parts if not frame.startswith(("process ", "thread "))]
        category = next((c for f in reversed(frames_) if (c := _category(f))), OTHER)
        who = role(pid)
        profile.by_category[who][category] += int(count)
        if frames_:
            profile.by_leaf[who][function(frames_[-1])] += int(count)
    return profile


def table(profile: Profile, top: int = 8) -> list[str]:
    """Markdown: CPU ms per frame by category and role, then each role's busiest leaf functions."""
    roles = sorted(profile.by_category)
    ms = {
        category: [profile.ms_per_frame(r, profile.by_category[r][category]) for r in roles]
        for category in {c for counts in profile.by_category.values() for c in counts}
    }
    lines = [
        "| category | " + " | ".join(f"{r} ms/frame" for r in roles) + " |",
        "|---|" + "---:|" * len(roles),
    ]
    for category, row in sorted(ms.items(), key=lambda item: -sum(item[1])):
        lines.append(f"| {category} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    sums = " | ".join(f"**{profile.cpu_ms.get(r, float('nan')):.3f}**" for r in roles)
    samples = sum(sum(counts.values()) for counts in profile.by_category.values())
    lines += [f"| all (measured; {samples} samples) | {sums} |", ""]
    for r in roles:
        leaves = ", ".join(
            f"`{name}` {profile.ms_per_frame(r, n):.3f}" for name, n in profile.by_leaf[r].most_common(top)
        )
        lines.append(f"- {r}, busiest leaf functions (ms/frame): {leaves}")
    return lines


class Recorder:
    """py-spy attached to processes (each with its children) until stop(); their raw stacks."""

    def __init__(self, pids: Sequence[int], out: Path, rate: int = RATE):
        out.mkdir(parents=True, exist_ok=True)
        self.outputs = [out / f"py-spy-{pid}.txt" for pid in pids]
        self._spies = []
        for pid, output in zip(pids, self.outputs, strict=True):
            command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid)]
            command += ["--subprocesses", "--threads", "--nonblocking", "--format", "raw"]
            command += ["--rate", str(rate), "--output", str(output)]
            spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert spy.stdout is not None
            line = spy.stdout.readline()  # "py-spy> Sampling process ..." once attached
            if "Sampling" not in line:
                spy.kill()
                raise RuntimeError(f"py-spy did not attach to {pid}: {line.strip()}")
            self._spies.append(spy)

    def stop(self) -> str:
        """Stop sampling (py-spy writes its file on SIGINT); all the raw stacks."""
        for spy in self._spies:
            spy.send_signal(signal.SIGINT)
        for spy in self._spies:
            spy.communicate(timeout=60)
        return "\n".join(output.read_text() for output in self.outputs if output.exists())
