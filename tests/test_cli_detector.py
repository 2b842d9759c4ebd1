"""`inspector train` and `inspector score` as a user types them, including the failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from inspector.cli import main
from inspector.detector import Checkpoint

from .conftest import TINY_SIZE, blob_frames


def _write_frames(folder: Path, frames: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"f{i:03d}.png"
        cv2.imwrite(str(path), (frame[0] * 255).astype(np.uint8))
        paths.append(path)
    return paths


def test_train_then_score_with_maps(tmp_path: Path) -> None:
    written = _write_frames(tmp_path / "normal" / "sub", blob_frames(40))
    model = tmp_path / "m.pt"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "train",
            "--data",
            str(tmp_path / "normal"),
            "--out",
            str(model),
            "--epochs",
            "1",
            "--image-size",
            str(TINY_SIZE),
            "--seed",
            "1",
            "--method",
            "vaegan",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and model.is_file()
    # The checkpoint records its training frames (file and content hash, held out or not) and the
    # held-out frames' scores per method, from which each default threshold came.
    metadata = Checkpoint.load(model).metadata
    records = metadata["training_frames"]
    assert [r["path"] for r in records] == [str(p.resolve()) for p in written]
    assert records[0]["sha256"] == hashlib.sha256(written[0].read_bytes()).hexdigest()
    assert sum(r["heldout"] for r in records) == metadata["validation_frames"] == 4
    # Every frame's level (its mean before flat-fielding), sorted: the drift monitor's reference.
    assert metadata["frame_levels"] == sorted(round(r["level"], 6) for r in records)
    for method, threshold in Checkpoint.load(model).thresholds.items():
        assert len(metadata["heldout_scores"][method]) == 4
        assert threshold == pytest.approx(np.quantile(metadata["heldout_scores"][method], 0.99))
    queries = _write_frames(tmp_path / "q", blob_frames(3, seed=5))
    result = runner.invoke(
        main, ["score", str(model), str(tmp_path / "q"), "--format", "json", "--maps", str(tmp_path / "maps")]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["frame"] for r in rows] == [str(p) for p in queries]
    assert all(r["verdict"] in ("normal", "anomaly") for r in rows)
    assert sorted(rows[0]["maps"]) == ["anomaly", "attention", "error", "input", "reconstruction"]
    assert cv2.imread(rows[0]["maps"]["attention"]).shape == (TINY_SIZE, TINY_SIZE, 3)
    result = runner.invoke(
        main, ["score", str(model), str(queries[0]), "--method", "vaegan", "--format", "csv"]
    )
    assert result.exit_code == 0 and result.output.startswith("frame,score,threshold,verdict")


def test_score_reports_unreadable_frames_and_exits_nonzero(tiny_checkpoint: Path, tmp_path: Path) -> None:
    good = _write_frames(tmp_path, blob_frames(1))[0]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = CliRunner().invoke(main, ["score", str(tiny_checkpoint), str(good), str(bad)])
    assert result.exit_code == 1
    assert "bad.png" in result.output and "not a readable image" in result.output
    assert "normal" in result.output or "anomaly" in result.output


def test_clear_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    frame = _write_frames(tmp_path / "one", blob_frames(1))[0]
    missing = runner.invoke(main, ["score", str(tmp_path / "nope.pt"), str(frame)])
    assert missing.exit_code != 0 and "model file not found" in missing.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 10)
    corrupt = runner.invoke(main, ["score", str(junk), str(frame)])
    assert corrupt.exit_code != 0 and "not a readable inspector model" in corrupt.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "x.pt")])
    assert empty.exit_code != 0 and "no image files" in empty.output
    depth_data = tmp_path / "depth"
    depth_data.mkdir()
    cv2.imwrite(str(depth_data / "d.png"), np.zeros((8, 8, 3), np.uint8))
    wrong = runner.invoke(
        main, ["train", "--data", str(depth_data), "--mode", "depth", "--out", str(tmp_path / "d.pt")]
    )
    assert wrong.exit_code != 0 and "one channel" in wrong.output


def test_maps_of_same_named_frames_from_different_folders_do_not_collide(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """cam1/f000.png and cam2/f000.png (and f000.png beside f000.tif) each keep their own maps,
    named by their path under the folder holding all the inputs."""
    first = _write_frames(tmp_path / "cam1", blob_frames(1, seed=1))[0]
    second = _write_frames(tmp_path / "cam2" / "sub", blob_frames(1, seed=2))[0]
    tif = first.with_suffix(".tif")
    cv2.imwrite(str(tif), np.zeros((TINY_SIZE, TINY_SIZE), np.uint8))
    maps = tmp_path / "maps"
    args = ["score", str(tiny_checkpoint), str(tmp_path / "cam1"), str(tmp_path / "cam2"), "--format", "json"]
    result = CliRunner().invoke(main, [*args, "--maps", str(maps)])
    assert result.exit_code == 0, result.output
    inputs = {Path(row["frame"]).resolve(): row["maps"]["input"] for row in json.loads(result.output)}
    assert inputs == {
        first.resolve(): str(maps / "cam1" / "f000.png.input.png"),
        tif.resolve(): str(maps / "cam1" / "f000.tif.input.png"),
        second.resolve(): str(maps / "cam2" / "sub" / "f000.png.input.png"),
    }
    pictures = [cv2.imread(path) for path in inputs.values()]
    assert not np.array_equal(pictures[0], pictures[1]) and not np.array_equal(pictures[0], pictures[2])


def test_maps_come_back_at_the_files_own_resolution(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A frame larger than the model's input, and of another aspect, is scored scaled down; its maps
    are written at the file's own size, over the file's own pixels."""
    small = blob_frames(1, seed=3)[0, 0]
    large = cv2.resize(small, (3 * TINY_SIZE, 2 * TINY_SIZE + 5), interpolation=cv2.INTER_LINEAR)
    frame = tmp_path / "q" / "large.png"
    frame.parent.mkdir()
    cv2.imwrite(str(frame), (large * 255).astype(np.uint8))
    args = ["score", str(tiny_checkpoint), str(frame), "--format", "json", "--maps", str(tmp_path / "maps")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    maps = json.loads(result.output)[0]["maps"]
    for kind, path in maps.items():
        assert cv2.imread(path).shape[:2] == (2 * TINY_SIZE + 5, 3 * TINY_SIZE), kind
    np.testing.assert_array_equal(cv2.imread(maps["input"], cv2.IMREAD_GRAYSCALE), cv2.imread(str(frame), 0))


def test_model_settings_belong_to_the_family_that_is_trained(tmp_path: Path) -> None:
    """A fixed-camera setting given to the paper's VAEGAN is refused, not silently dropped: the
    fixed-camera VAEGAN is a family of its own (vaegan-z)."""
    _write_frames(tmp_path / "normal", blob_frames(8))
    settings = tmp_path / "model.yaml"
    settings.write_text("neighbours: 5\n")
    args = ["train", "--data", str(tmp_path / "normal"), "--out", str(tmp_path / "m.pt"), "--epochs", "1"]
    args += ["--image-size", str(TINY_SIZE), "--model-config", str(settings)]
    refused = CliRunner().invoke(main, [*args, "--method", "vaegan-attn"])
    assert refused.exit_code != 0 and "unknown settings for a vaegan model: ['neighbours']" in refused.output
    unknown = CliRunner().invoke(main, [*args, "--method", "vaegan-attn-q"])
    assert unknown.exit_code != 0 and "unknown method 'vaegan-attn-q'" in unknown.output


def test_train_reads_colour_files_as_colour_unless_told(tmp_path: Path) -> None:
    """With no --mode (frames.mode auto) colour files train a colour model and the command says
    so; --mode grey still reads them as grey; a depth unit given means depth frames."""
    frames = blob_frames(8)
    folder = tmp_path / "normal"
    folder.mkdir()
    for i, frame in enumerate(frames):
        level = (frame[0] * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"f{i}.png"), np.stack([level // 3, level // 2, level], axis=2))
    args = [
        "train",
        "--data",
        str(folder),
        "--epochs",
        "1",
        "--image-size",
        str(TINY_SIZE),
        "--method",
        "vaegan",
    ]
    runner = CliRunner()
    auto = runner.invoke(main, [*args, "--out", str(tmp_path / "auto.pt")])
    assert auto.exit_code == 0, auto.output
    assert "8 of 8 sampled files hold colour: colour frames" in auto.output
    checkpoint = Checkpoint.load(tmp_path / "auto.pt")
    assert checkpoint.frame_spec.mode == "colour" and checkpoint.model_config.channels == 3
    grey = runner.invoke(main, [*args, "--out", str(tmp_path / "grey.pt"), "--mode", "grey"])
    assert grey.exit_code == 0, grey.output
    assert Checkpoint.load(tmp_path / "grey.pt").frame_spec.mode == "grey"
    depth = runner.invoke(main, [*args, "--out", str(tmp_path / "d.pt"), "--depth-unit-mm", "1"])
    assert depth.exit_code != 0 and "one channel" in depth.output  # read as depth: colour files refused


@pytest.mark.parametrize(
    ("dtype", "top", "bits"),
    [(np.uint16, 4095, "16-bit"), (np.uint8, 60, "8-bit")],
    ids=["12-bit camera", "dim 8-bit camera"],
)
def test_train_reads_narrow_levels_between_their_own(
    tmp_path: Path, dtype: type, top: int, bits: str
) -> None:
    """Files of a 12-bit camera (16-bit files) or of a dim 8-bit one train a model that reads them
    between their own levels, says so, and keeps the levels (on the 16-bit scale) in the
    checkpoint; scoring reads them the same way."""
    folder = tmp_path / "normal"
    folder.mkdir()
    for i, frame in enumerate(blob_frames(8)):
        cv2.imwrite(str(folder / f"f{i}.png"), (frame[0] * top).astype(dtype))
    args = ["train", "--data", str(folder), "--epochs", "1", "--image-size", str(TINY_SIZE)]
    result = CliRunner().invoke(main, [*args, "--method", "vaegan", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    assert (
        f"8 sampled files hold {bits} levels" in result.output and "read as black to white" in result.output
    )
    low, high = Checkpoint.load(tmp_path / "m.pt").frame_spec.raw_range
    assert 0 <= low < high <= top * 65535 / np.iinfo(dtype).max  # within the camera's levels
    scored = CliRunner().invoke(
        main, ["score", str(tmp_path / "m.pt"), str(folder / "f0.png"), "--format", "json"]
    )
    assert scored.exit_code == 0, scored.output


def test_the_bench_command_imports_the_checkouts_benchmarks() -> None:
    from inspector.cli import bench_module

    assert bench_module("paper_table").__name__ == "bench.paper_table"
