"""Every results file names the code that produced it, and says when that code was not committed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.provenance import git_commit


def test_results_name_the_commit_and_flag_uncommitted_changes(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"  # no checkout

    def git(*args: str) -> str:
        identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
        return subprocess.run(
            ["git", *identity, *args], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    git("add", "model.py")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "--short", "HEAD").strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked files are not code that ran\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "model.py").write_text("a = 2\n")
    assert git_commit(tmp_path) == f"{head} (with uncommitted changes in the tree)"
