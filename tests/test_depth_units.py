"""Wrong depth units (issue 17, item 14): SR305 frames (1/8 mm per unit) read as millimetres fall
beyond a far_mm given, every frame preprocesses to the same blank picture, and a model trained on
them scores every frame alike. Training refuses such frames and says which setting to fix; scoring
warns; --depth-unit-mm, --near-mm and --far-mm set the units on either command. Where no range is
given, training measures it from the frames (issue 18), and a wrong unit only scales it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml
from click.testing import CliRunner

from inspector.cli import main
from inspector.config import FrameSpec
from inspector.detector import Checkpoint
from inspector.frames import check_frames_vary, load_frame


def sr305_frames(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """16-bit depth PNGs in 1/8 mm: a wall at ~900 mm and a hand at ~400 mm that moves."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    paths = []
    for i in range(n):
        mm = 900 + rng.normal(0, 3, (48, 48))
        cy, cx = 24 + rng.uniform(-6, 6, 2)
        mm[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = 400
        path = folder / f"d{i:02d}.png"
        assert cv2.imwrite(str(path), (mm * 8).astype(np.uint16))
        paths.append(path)
    return paths


def test_frames_that_preprocess_to_one_value_are_named() -> None:
    varied = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    assert check_frames_vary(varied, FrameSpec()) is None
    blank = np.zeros((6, 1, 8, 8), np.float32)
    blank[0] = varied[0]  # one frame with content among blank ones
    message = check_frames_vary(blank, FrameSpec(mode="depth"))
    assert message is not None and "5 of 6 frames" in message and "--depth-unit-mm" in message
    assert "--depth-unit-mm" not in (check_frames_vary(blank, FrameSpec(mode="grey")) or "")


def test_millimetres_read_as_sr305_units_clip_to_blank(tmp_path: Path) -> None:
    (path,) = sr305_frames(tmp_path, 1)
    wrong = load_frame(path, FrameSpec(mode="depth", image_size=32))
    right = load_frame(path, FrameSpec(mode="depth", image_size=32, depth_unit_mm=0.125))
    assert wrong.max() == wrong.min() == 0.0  # all beyond far_mm (1500) at 1 mm per unit
    assert right.std() > 0.05


def test_train_refuses_blank_depth_frames_and_the_unit_flag_fixes_it(tmp_path: Path) -> None:
    """Told a working range the frames fall outside (their unit wrong), training refuses them."""
    sr305_frames(tmp_path / "train", 12)
    config = tmp_path / "inspector.yaml"
    config.write_text(yaml.safe_dump({"frames": {"mode": "depth"}}))  # depth_unit_mm left at 1
    model_config = tmp_path / "model.yaml"
    model_config.write_text(yaml.safe_dump({"width": 8, "latent_dim": 8, "batch_size": 8}))
    model = tmp_path / "hand.pt"
    base = ["--config", str(config), "train", "--data", str(tmp_path / "train"), "--out", str(model)]
    base += ["--image-size", "32", "--epochs", "1", "--method", "vaegan", "--model-config", str(model_config)]
    base += ["--min-epoch-frames", "16"]
    runner = CliRunner()
    refused = runner.invoke(main, [*base, "--far-mm", "1500"])
    assert refused.exit_code != 0 and not model.exists()
    assert "12 of 12 frames" in refused.output and "--depth-unit-mm" in refused.output

    result = runner.invoke(main, [*base, "--depth-unit-mm", "0.125", "--near-mm", "200", "--far-mm", "1200"])
    assert result.exit_code == 0, result.output
    spec = Checkpoint.load(model).frame_spec
    assert (spec.depth_unit_mm, spec.near_mm, spec.far_mm) == (0.125, 200.0, 1200.0)

    sr305_frames(tmp_path / "new", 4, seed=1)
    scored = runner.invoke(main, ["score", str(model), str(tmp_path / "new"), "--format", "json"])
    assert scored.exit_code == 0 and "constant" not in scored.stderr
    assert len({row["score"] for row in json.loads(scored.stdout)}) == 4  # frames told apart
    # The same frames from a camera that writes millimetres, scored without saying so: a warning.
    mm_frames = tmp_path / "mm"
    mm_frames.mkdir()
    for path in (tmp_path / "new").iterdir():
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(mm_frames / path.name), (raw // 8).astype(np.uint16))
    warned = runner.invoke(main, ["score", str(model), str(mm_frames), "--format", "json"])
    assert warned.exit_code == 0 and "4 of 4 frames are (near) constant" in warned.stderr
    fixed = runner.invoke(
        main, ["score", str(model), str(mm_frames), "--depth-unit-mm", "1", "--format", "json"]
    )
    assert fixed.exit_code == 0 and "constant" not in fixed.stderr


def test_train_measures_the_working_range_where_none_is_given(tmp_path: Path) -> None:
    """With no range given the frames' own depths set it (printed, kept in the checkpoint), so a
    unit left wrong scales the range with the frames instead of blanking them; an end given is
    kept; an end that leaves no range with the measured one or the default is refused."""
    sr305_frames(tmp_path / "train", 8)
    base = ["train", "--data", str(tmp_path / "train"), "--image-size", "32", "--epochs", "1"]
    base += ["--method", "vaegan", "--min-epoch-frames", "16", "--mode", "depth"]
    runner = CliRunner()
    for unit, hand, wall in ((0.125, 400, 900), (1.0, 3200, 7200)):  # right, and left at 1 mm
        model = tmp_path / f"{unit}.pt"
        result = runner.invoke(main, [*base, "--depth-unit-mm", str(unit), "--out", str(model)])
        assert result.exit_code == 0, result.output
        assert "working range" in result.output
        spec = Checkpoint.load(model).frame_spec
        assert spec.near_mm < hand < wall < spec.far_mm < 1.2 * wall
        assert spec.near_mm > 0.8 * hand - 0.2 * wall
    near_given = runner.invoke(main, [*base, "--near-mm", "100", "--out", str(tmp_path / "near.pt")])
    assert near_given.exit_code == 0, near_given.output
    assert Checkpoint.load(tmp_path / "near.pt").frame_spec.near_mm == 100
    beyond = runner.invoke(main, [*base, "--near-mm", "99000", "--out", str(tmp_path / "x.pt")])
    assert beyond.exit_code != 0 and "must lie beyond --near-mm (99000)" in beyond.output
