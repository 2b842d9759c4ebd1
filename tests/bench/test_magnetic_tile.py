"""The magnetic-tile benchmark's split and metrics (the full run is minutes; see bench/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import magnetic_tile as bench
from tests.conftest import SHARED_DATA

TILES = SHARED_DATA / "magnetic-tile"


@pytest.mark.skipif(not TILES.is_dir(), reason="needs ../shared/data/magnetic-tile")
def test_protocol_split_and_masks() -> None:
    split = bench.protocol_split(TILES)
    assert len(split.train) == 634 and len(split.test) == 710
    classes = np.array(split.classes)
    assert (classes == "Free").sum() == 318 and (classes != "Free").sum() == 392
    free = sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))
    assert split.test[0] == free[0] and split.test[1] == free[3] and free[1] in split.train
    assert not set(split.train) & set(split.test)
    masks = bench.load_masks([split.test[0], split.test[318]])
    assert masks.shape == (2, 128, 128) and masks.dtype == bool
    assert not masks[0].any() and masks[1].any()


def test_metrics_per_class_and_pooled() -> None:
    classes = np.array(["Free"] * 4 + ["Blowhole", "Break", "Crack", "Fray", "Uneven"])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.15, 0.9, 0.9, 0.9])
    image = bench.image_aurocs(scores, classes)
    assert image["Blowhole"] == 1.0 and image["Break"] == 0.25
    assert image["overall"] == pytest.approx(17 / 20)
    masks = np.zeros((9, 128, 128), bool)
    masks[4:, :8] = True
    maps = masks.astype(np.float32)
    maps[0] = 1.0  # a normal frame that looks defective all over
    pixel = bench.pixel_aurocs(bench.to_metric_size(maps[:, ::2, ::2]), masks, classes)
    assert 0.9 < pixel["overall"] < 1.0 and pixel["Crack"] == pixel["Fray"]


@pytest.mark.skipif(not TILES.is_dir(), reason="needs ../shared/data/magnetic-tile")
def test_surface_settings_train_and_score_real_tiles_from_the_cli(tmp_path: Path) -> None:
    """The published surface configuration as a user runs it: flat-fielded frames, the
    shipped model settings, real tiles; the frame settings travel inside the checkpoint."""
    import json
    import shutil

    import yaml
    from click.testing import CliRunner

    from inspector.cli import main
    from inspector.detector import Checkpoint

    normal = tmp_path / "normal"
    normal.mkdir()
    for image in sorted((TILES / "MT_Free" / "Imgs").glob("*.jpg"))[:24]:
        shutil.copy(image, normal)
    settings = tmp_path / "inspector.yaml"
    settings.write_text(yaml.safe_dump({"frames": {"mode": "grey", "flatten": 2.0}}))
    surface = Path(__file__).resolve().parents[2] / "configs" / "models" / "surface.yaml"
    model = tmp_path / "tile.pt"
    runner = CliRunner()
    args = ["--config", str(settings), "train", "--data", str(normal), "--out", str(model)]
    args += [
        "--method",
        "vaegan-attn-z",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--model-config",
        str(surface),
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    checkpoint = Checkpoint.load(model)
    assert checkpoint.frame_spec.flatten == 2.0 and checkpoint.family.name == "vaegan-z"
    assert checkpoint.model_config.neighbours == 20
    assert {"error_statistics.maps", "attention_statistics.mean"} <= set(checkpoint.state_dict)

    blowhole = sorted((TILES / "MT_Blowhole" / "Imgs").glob("*.jpg"))[0]
    result = runner.invoke(main, ["score", str(model), str(blowhole), "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["score"] >= 0 and row["verdict"] in ("normal", "anomaly")


def test_a_whole_run_writes_its_results_on_a_small_synthetic_set(tmp_path: Path) -> None:
    """The run end to end on a folder laid out as the real set (CI has no ../shared): every
    planned family trained and scored, both result files written, the device named."""
    import cv2

    rng = np.random.default_rng(0)
    for name, count in (("Free", 30), *((c, 2) for c in bench.CLASSES)):
        folder = tmp_path / "tiles" / f"MT_{name}" / "Imgs"
        folder.mkdir(parents=True)
        for i in range(count):
            image = rng.normal(120, 10, (40, 30)).clip(0, 255).astype(np.uint8)
            mask = np.zeros_like(image)
            if name != "Free":
                image[10:20, 10:20] = 20
                mask[10:20, 10:20] = 255
            cv2.imwrite(str(folder / f"{name}_{i}.jpg"), image)
            cv2.imwrite(str(folder / f"{name}_{i}.png"), mask)
    budget = bench.Budget.quick()
    budget.image_size = 32
    text = bench.run_benchmark(str(tmp_path / "tiles"), budget, ["vaegan-z"], 1, tmp_path / "out", "run")
    assert "- **device**: cpu" in text and "| vaegan-attn-z |" in text and "**goal** (vaegan-attn-z" in text
    results = (tmp_path / "out" / "run.json").read_text()
    assert '"vaegan-attn-z"' in results and (tmp_path / "out" / "run.md").read_text() == text
