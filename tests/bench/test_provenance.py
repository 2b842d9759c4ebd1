"""Every results file names the code that produced it, and says when that code was not committed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.provenance import ROOT, child_environment, git_commit, write_report


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


def test_a_benchmarks_child_runs_this_trees_code(tmp_path: Path) -> None:
    """Started elsewhere, with the environment the benchmarks give their children, Python finds
    the package in this tree, whichever checkout the virtual environment was installed from."""
    found = subprocess.run(
        [sys.executable, "-c", "import inspector; print(inspector.__file__)"],
        cwd=tmp_path,
        env=child_environment({"EXTRA": "1"}),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert Path(found.strip()).is_relative_to(ROOT / "inspector")
    environment = child_environment({"EXTRA": "1"})
    assert environment["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT) and environment["EXTRA"] == "1"


def test_a_rerun_keeps_the_hand_written_sections_of_the_report_it_replaces(tmp_path: Path) -> None:
    report = tmp_path / "r.md"
    write_report(report, "# new\n")
    assert report.read_text() == "# new\n"  # nothing to keep yet
    report.write_text(
        "# old\n\nold figures\n\n## Note (written by hand, today)\n\nwhy\n\n## More (written by hand)\n"
    )
    write_report(report, "# new\n\nnew figures\n")
    assert (
        report.read_text()
        == "# new\n\nnew figures\n\n## Note (written by hand, today)\n\nwhy\n\n## More (written by hand)\n"
    )
    report.write_text("# old, no notes\n")
    write_report(report, "# new\n")
    assert report.read_text() == "# new\n"
