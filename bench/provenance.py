"""Which code produced a results file, on what, and what a person wrote in it: for every bench script."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported on use: the scripts that only drive others need none
    import torch

ROOT = Path(__file__).resolve().parents[1]


def child_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment, with ``env`` on top, for a child process that runs ``inspector``: its
    console script imports the package the virtual environment installed, which may be another
    checkout's (a git worktree sharing the environment), so this tree goes first on PYTHONPATH and
    the benchmark measures the code it was run from."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **(env or {})}


def git_commit(root: Path = ROOT) -> str:
    """The short commit of HEAD, flagged when tracked files differ from it (a number measured
    on uncommitted code must say so); "unknown" outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (with uncommitted changes in the tree)" if dirty else "")


HAND = "(written by hand"  # in a results file's "## " heading: a reading no script produces


def write_report(path: Path, rendered: str) -> None:
    """Write a rerun's report to ``path``, the sections of the file it replaces that a person wrote
    (from the first "## " heading that says HAND to the end) kept below it: a rerun must not erase them."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    start = next((i for i, line in enumerate(lines) if line.startswith("## ") and HAND in line), None)
    path.write_text(rendered if start is None else rendered.rstrip("\n") + "\n\n" + "".join(lines[start:]))


def gpu_name(device: torch.device) -> str:
    """The GPU a run used ("none" for the CPU)."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "none"


def shared_machine(services: str) -> str:
    """The CPU, its cores and their load at the end (other jobs share them), Python, and the
    ``services`` the run used."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    return (
        f"{os.cpu_count()} cores, {cpu} (shared with other jobs: load average {os.getloadavg()[0]:.1f} "
        f"at the end); Python {platform.python_version()}; {services}"
    )
