"""Maps measured per pixel against held-out normals (a fixed camera), and VAEGAN scoring with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.config import FrameSpec
from inspector.detector import Detector
from inspector.models import build_model
from inspector.models.base import absolute_error
from inspector.models.standardise import STD_FLOOR, PixelStatistics
from inspector.training import TrainOptions, train

from ..conftest import TINY_SIZE, blob_frames, tiny_config


def test_a_pixel_counts_in_units_of_its_own_normal_spread() -> None:
    """Pixel (0, 0) always varies a lot on normal maps, pixel (1, 1) hardly: the same excess
    over the mean is unusual only at (1, 1). Below normal counts as nothing."""
    normal = torch.full((4, 3, 3), 0.5)
    normal[:, 0, 0] = torch.tensor([0.1, 0.9, 0.1, 0.9])
    normal[:, 1, 1] = torch.tensor([0.49, 0.51, 0.49, 0.51])
    statistics = PixelStatistics(3, blur=0.0)
    statistics.fit([normal[:3], normal[3:]])  # batches, as they come
    new = torch.full((1, 3, 3), 0.5)
    new[0, 0, 0] = new[0, 1, 1] = 0.6
    new[0, 2, 2] = 0.0
    z = statistics(new)[0]
    assert z[0, 0] == pytest.approx(0.1 / (0.4 + STD_FLOOR), rel=1e-4)
    assert z[1, 1] == pytest.approx(0.1 / (0.01 + STD_FLOOR), rel=1e-4)
    assert z[2, 2] == 0.0 and z[0, 1] == 0.0


@pytest.fixture(scope="module")
def standardised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tiny_config("vaegan", standardise=True, attention_layer=1, error_blur=0.5, region_blur=3.0)
    checkpoint = train(
        blob_frames(60), config, FrameSpec(image_size=TINY_SIZE), TrainOptions(epochs=2, device="cpu")
    )
    path = tmp_path_factory.mktemp("standardised") / "m.pt"
    checkpoint.save(path)
    return path


def test_statistics_are_fitted_after_training_and_saved_with_the_weights(standardised: Path) -> None:
    detector = Detector.load(standardised, device="cpu")
    state = detector.checkpoint.state_dict
    for name in ("error_statistics", "attention_statistics", "region_statistics"):
        assert state[f"{name}.mean"].shape == (TINY_SIZE, TINY_SIZE)
        assert (state[f"{name}.std"] >= STD_FLOOR).all()
    assert state["error_statistics.mean"].max() > 0 and not torch.equal(
        state["error_statistics.std"], torch.ones(TINY_SIZE, TINY_SIZE)
    )
    # A model without standardisation has no such buffers: older checkpoints still load.
    assert not any("statistics" in key for key in build_model(tiny_config("vaegan")).state_dict())


def test_standardised_scores_are_the_peak_of_the_map(standardised: Path) -> None:
    """vaegan: the map is z of the error; vaegan-attn adds z of the attention. A frame's score
    is its map's peak, so a small defect on a normal frame lifts it."""
    frames = blob_frames(6, seed=1)
    for method in ("vaegan", "vaegan-attn"):
        detections = Detector.load(standardised, method=method, device="cpu").score_arrays(frames)
        for d in detections:
            assert d.anomaly_map.shape == (TINY_SIZE, TINY_SIZE) and d.anomaly_map.min() >= 0
            assert d.score == pytest.approx(float(d.anomaly_map.max()))
            if method == "vaegan":
                np.testing.assert_array_equal(d.anomaly_map, d.error)
                assert d.attention is None
            else:
                assert d.attention is not None and (d.anomaly_map >= d.error - 1e-6).all()
    defective = frames.copy()
    defective[:, 0, 4:7, 4:7] = 1.0  # a bright speck off the disc
    detector = Detector.load(standardised, method="vaegan", device="cpu")
    before = [d.score for d in detector.score_arrays(frames)]
    after = detector.score_arrays(defective)
    assert all(a.score > b for a, b in zip(after, before, strict=True))
    assert all(np.unravel_index(a.anomaly_map.argmax(), a.anomaly_map.shape) in _near(5, 5) for a in after)


def test_region_blur_keeps_the_larger_of_the_fine_and_the_coarse_z(standardised: Path) -> None:
    """A faint defect spread over a region stands out once the error is smoothed coarsely; a
    sharp one at the fine scale: the map keeps whichever is larger, pixel by pixel."""
    checkpoint = Detector.load(standardised, device="cpu").checkpoint
    model = build_model(checkpoint.model_config)
    model.load_state_dict(checkpoint.state_dict)
    model.eval()
    x = torch.from_numpy(blob_frames(3, seed=2))
    with torch.no_grad():
        raw = absolute_error(x, model.reconstruct(x))
        fine, coarse = model.error_statistics(raw), model.region_statistics(raw)
    assert not torch.equal(fine, coarse)
    torch.testing.assert_close(model.score(x, "vaegan").error, torch.maximum(fine, coarse))


def _near(y: int, x: int, radius: int = 2) -> set[tuple[int, int]]:
    return {(y + dy, x + dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)}
