"""The whole CLI path on real depth-camera frames: train on one hand pose, score the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from inspector.cli import main
from inspector.detector import Checkpoint

from .conftest import SHARED_DATA

HAND = SHARED_DATA / "depth" / "hand-sr305"
pytestmark = pytest.mark.skipif(not HAND.is_dir(), reason="needs ../shared/data/depth")


def test_train_on_eight_depth_frames_then_score_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "inspector.yaml"
    config.write_text(yaml.safe_dump({"frames": {"mode": "depth", "depth_unit_mm": 0.125, "far_mm": 1500.0}}))
    model_config = tmp_path / "model.yaml"
    model_config.write_text(yaml.safe_dump({"width": 8, "latent_dim": 8, "batch_size": 8}))
    model = tmp_path / "hand.pt"
    runner = CliRunner()
    args = ["--config", str(config), "train", "--data", str(HAND / "gesture"), "--out", str(model)]
    args += ["--image-size", "32", "--epochs", "2", "--method", "vaegan", "--model-config", str(model_config)]
    args += ["--shift", "2", "--gain", "0.05", "--patience", "2", "--min-epoch-frames", "32"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "on 8 frames of depth 32×32 px" in result.output

    checkpoint = Checkpoint.load(model)
    assert checkpoint.frame_spec.mode == "depth" and checkpoint.frame_spec.depth_unit_mm == 0.125
    assert checkpoint.metadata["validation_frames"] == 2  # held out even from eight frames
    assert checkpoint.metadata["threshold_from"] == "held-out frames"

    result = runner.invoke(
        main, ["score", str(model), str(HAND / "other"), str(HAND / "gesture"), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 19
    assert all(r["verdict"] in ("normal", "anomaly") and r["score"] >= 0 for r in rows)
