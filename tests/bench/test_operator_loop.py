"""The operator-loop benchmark: its streams never overlap, and a quick run goes through every
step (train, watch, review, retrain, shadow, compare, promote) on real tiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import operator_loop as bench
from tests.conftest import SHARED_DATA

TILES = SHARED_DATA / "magnetic-tile"
needs_tiles = pytest.mark.skipif(not TILES.is_dir(), reason="needs ../shared/data/magnetic-tile")


@needs_tiles
def test_the_streams_are_disjoint_and_cover_the_split() -> None:
    streams = bench.split_streams(TILES)
    files = {name: [p for p, _ in s] for name, s in streams.items()}
    assert [len(files[k]) for k in ("train", "stream1", "stream2")] == [159, 673, 512]
    assert sum(d for _, d in streams["stream2"]) == 194 and sum(d for _, d in streams["stream1"]) == 198
    every = files["train"] + files["stream1"] + files["stream2"]
    assert len(set(every)) == len(every) == 1344  # each image once


def test_the_verdict_needs_half_the_false_alarms_and_no_lost_recall() -> None:
    def row(fa: int, recall: float) -> dict:
        return {"false_alarms": fa, "recall": recall}

    keys = ("matched", "recall 90%", "recall 95%")
    table = {
        "A (live)": {k: row(40, 0.9) for k in keys},
        "B (candidate, shadow)": {
            "matched": row(20, 0.9),
            "recall 90%": row(21, 0.9),
            "recall 95%": row(10, 0.85),
        },
    }
    lines = bench.verdicts({"table": table})
    assert lines[0].endswith(": met") and "50% fewer" in lines[0]
    assert lines[1].endswith("**not met**") and lines[2].endswith("**not met**")  # 47.5%; recall lost


@pytest.mark.slow
@needs_tiles
def test_a_quick_run_goes_through_every_step(tmp_path: Path) -> None:
    bench.main(["--data", str(TILES), "--work", str(tmp_path / "work"), "--quick", "--out", str(tmp_path)])
    report = (tmp_path / "operator_loop_quick.md").read_text()
    assert "## Goal: false alarms at fixed recall" in report and "| B (candidate, shadow) |" in report
    assert "$ inspector retrain --from" in report and "$ inspector model promote" in report
    assert "tiles            live       vaegan-z-" in report  # B is live after the promotion
