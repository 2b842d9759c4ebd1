"""The operator-loop benchmark: its streams never overlap, and a quick run goes through every
step (train, watch, review, retrain, shadow, compare, promote) on real tiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

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


@needs_tiles
def test_model_a_trains_as_a_user_would_or_as_the_published_vaegan_z(tmp_path: Path) -> None:
    default = bench.Loop(TILES, tmp_path / "default", threads=1, quick=False)
    assert default.train_args == []  # `inspector train --data DIR --out A.pt`, nothing else
    assert "frames" not in yaml.safe_load(default.config.read_text())  # the product's frame settings
    old = bench.Loop(TILES, tmp_path / "old", threads=1, quick=False, method="vaegan-z")
    model = ["--model-config", str(tmp_path / "old" / "model.yaml")]
    budget = ["--epochs", "12", "--method", "vaegan-z", "--shift", "2", "--gain", "0.05", "--patience", "5"]
    assert old.train_args == [*model, *budget]  # as the runs before the default path trained
    assert yaml.safe_load(old.config.read_text())["frames"] == {
        "mode": "grey",
        "image_size": 128,
        "flatten": 8.0,
    }
    assert yaml.safe_load((tmp_path / "old" / "model.yaml").read_text())["model"]["width"] == 32


@pytest.mark.slow
@needs_tiles
def test_a_quick_run_goes_through_every_step(tmp_path: Path) -> None:
    bench.main(["--data", str(TILES), "--work", str(tmp_path / "work"), "--quick", "--out", str(tmp_path)])
    report = (tmp_path / "operator_loop_quick.md").read_text()
    assert "## Goal: false alarms at fixed recall" in report and "| B (candidate, shadow) |" in report
    assert "trained by the default path (`inspector train` with no method): patch-memory" in report
    assert "$ inspector retrain --from" in report and "$ inspector model promote" in report
    b = json.loads((tmp_path / "operator_loop_quick.json").read_text())["versions"]["B"]
    assert f"tiles            live       {b}" in report  # B is live after the promotion
