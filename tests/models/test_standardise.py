"""Maps measured per pixel against normal frames, and the fixed-camera VAEGAN (vaegan-z) scoring with them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.config import FrameSpec
from inspector.detector import Detector
from inspector.models.base import absolute_error
from inspector.models.standardise import STD_FLOOR, NeighbourStatistics, PixelStatistics, evenly_spaced
from inspector.training import TrainOptions, train

from ..conftest import TINY_SIZE, blob_frames, build_model, tiny_config


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


def test_neighbour_statistics_measure_a_frame_against_the_normal_frames_of_its_own_kind() -> None:
    """Two kinds of normal frame (codes near 0 and near 10): pixel (0, 0) is 0.2 ± 0.01 on the
    first kind and 0.8 ± 0.01 on the second. A value of 0.5 is far above normal for the first
    kind; global statistics (mean 0.5, σ 0.3) would call it exactly normal for both."""
    codes = torch.tensor([[0.0], [0.1], [0.2], [0.3], [10.0], [10.1], [10.2], [10.3]])
    maps = torch.zeros(8, 2, 2)
    maps[:, 0, 0] = torch.tensor([0.19, 0.21, 0.19, 0.21, 0.79, 0.81, 0.79, 0.81])
    statistics = NeighbourStatistics(2, blur=0.0, neighbours=4)
    statistics.fit([(codes[:5], maps[:5]), (codes[5:], maps[5:])])
    new = torch.zeros(2, 2, 2)
    new[:, 0, 0] = 0.5
    z = statistics(new, torch.tensor([[0.15], [10.15]]))
    assert z[0, 0, 0] == pytest.approx(0.3 / (0.01 + STD_FLOOR), rel=1e-2)
    assert z[1, 0, 0] == 0.0  # below the second kind's normal
    assert (z[:, 1, 1] == 0).all()
    assert statistics.codes.shape == (8, 1) and statistics.maps.shape == (8, 2, 2)


def test_neighbour_statistics_move_smoothly_with_the_code() -> None:
    """The 3rd and 4th nearest references tie (codes 2 and -2 from the frame's 0) and differ
    (maps 0.9 and 0.1). A nudge of the code by 1e-4, as a GPU's arithmetic gives, swaps them:
    with equal weights μ jumps by a quarter; weighted, the one at the edge weighs almost
    nothing, so z barely moves. A checkpoint saved before the weighting loads with equal
    weights, and scores as it did."""
    codes = torch.tensor([[0.5], [-0.5], [2.0], [-2.0], [5.0]])
    maps = torch.zeros(5, 2, 2)
    maps[:, 0, 0] = torch.tensor([0.2, 0.22, 0.9, 0.1, 0.5])
    statistics = NeighbourStatistics(2, blur=0.0, neighbours=3)
    statistics.fit([(codes, maps)])
    frame = torch.full((2, 2, 2), 0.3)
    nudged = torch.tensor([[1e-4], [-1e-4]])
    z = statistics(frame, nudged)[:, 0, 0]
    assert (z[0] - z[1]).abs() < 0.01 * z.abs().max()

    saved = {name: value for name, value in statistics.state_dict().items() if name != "weighted"}
    before = NeighbourStatistics(2, blur=0.0, neighbours=3)
    before.load_state_dict(saved)
    assert not before.weighted
    equal = before(frame, nudged)[:, 0, 0]
    assert (equal[0] - equal[1]).abs() > 0.2 * equal.abs().max()  # the jump the weights remove
    thirds = ([0.2, 0.22, 0.9], [0.2, 0.22, 0.1])  # the 3rd nearest: code 2, then code -2
    expected = [
        (0.3 - torch.tensor(v).mean()) / (torch.tensor(v).std(unbiased=False) + STD_FLOOR) for v in thirds
    ]
    torch.testing.assert_close(equal, torch.stack(expected).clamp_min(0.0), rtol=1e-2, atol=1e-3)


def test_neighbour_statistics_keep_an_evenly_spaced_subset_of_many_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(NeighbourStatistics, "MAX_REFERENCES", 4)
    statistics = NeighbourStatistics(2, blur=0.0, neighbours=2)
    statistics.fit([(torch.arange(10.0)[:, None], torch.zeros(10, 2, 2))])
    assert statistics.codes[:, 0].tolist() == [0.0, 3.0, 6.0, 9.0]
    assert statistics.maps.dtype == torch.float16
    assert evenly_spaced(3, 4).tolist() == [0, 1, 2] and evenly_spaced(7, 3).tolist() == [0, 3, 6]
    with pytest.raises(ValueError, match="neighbours must be"):
        build_model(tiny_config("vaegan-z", neighbours=-5))


@pytest.fixture(scope="module")
def standardised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tiny_config("vaegan-z", attention_layer=1, error_blur=0.5, region_blur=3.0)
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
    # The paper's VAEGAN has no such buffers.
    assert not any("statistics" in key for key in build_model(tiny_config("vaegan")).state_dict())


def test_standardised_scores_are_the_peak_of_the_map(standardised: Path) -> None:
    """vaegan-z: the map is z of the error; vaegan-attn-z adds z of the attention. A frame's
    score is its map's peak, so a small defect on a normal frame lifts it."""
    frames = blob_frames(6, seed=1)
    for method in ("vaegan-z", "vaegan-attn-z"):
        detections = Detector.load(standardised, method=method, device="cpu").score_arrays(frames)
        for d in detections:
            assert d.anomaly_map.shape == (TINY_SIZE, TINY_SIZE) and d.anomaly_map.min() >= 0
            assert d.score == pytest.approx(float(d.anomaly_map.max()))
            if method == "vaegan-z":
                np.testing.assert_array_equal(d.anomaly_map, d.error)
                assert d.attention is None
            else:
                assert d.attention is not None and (d.anomaly_map >= d.error - 1e-6).all()
    defective = frames.copy()
    defective[:, 0, 4:7, 4:7] = 1.0  # a bright speck off the disc
    detector = Detector.load(standardised, method="vaegan-z", device="cpu")
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
    torch.testing.assert_close(model.score(x, "vaegan-z").error, torch.maximum(fine, coarse))


def test_attention_cap_bounds_what_the_attention_adds_to_the_error(standardised: Path) -> None:
    """vaegan-attn-z's map is z_e + min(z_A, cap): attention weighs in, but cannot make a peak of
    its own. Without a cap (0, the default) it is z_e + z_A."""
    checkpoint = Detector.load(standardised, device="cpu").checkpoint
    x = torch.from_numpy(blob_frames(4, seed=3))
    spikes = torch.zeros(4, TINY_SIZE, TINY_SIZE)
    spikes[:, 10:14, 10:14] = 1.0  # the discriminator looking hard where it never does
    maps = {}
    for cap in (0.0, 0.5):
        model = build_model(dataclasses.replace(checkpoint.model_config, attention_cap=cap))
        model.load_state_dict(checkpoint.state_dict)
        model.eval()
        model.grad_cam = lambda frames: spikes  # the combination under test, not Grad-CAM
        maps[cap] = model.score(x, "vaegan-attn-z").anomaly_map
        z_e = model.score(x, "vaegan-z").anomaly_map
        z_a = model.attention_statistics(spikes)
    torch.testing.assert_close(maps[0.0], z_e + z_a)
    torch.testing.assert_close(maps[0.5], z_e + z_a.clamp_max(0.5))
    assert z_a.max() > 0.5 and (maps[0.5] <= maps[0.0]).all()
    with pytest.raises(ValueError, match="attention_cap"):
        build_model(dataclasses.replace(checkpoint.model_config, attention_cap=-1.0))


def test_neighbour_statistics_are_saved_with_the_weights_and_score_after_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference maps' buffers are as large as the training set (up to MAX_REFERENCES
    frames): a fresh model takes their saved size on loading, and scoring uses each frame's
    nearest references."""
    monkeypatch.setattr(NeighbourStatistics, "MAX_REFERENCES", 12)
    config = tiny_config("vaegan-z", attention_layer=1, region_blur=4.0, neighbours=5)
    frames = blob_frames(30)
    checkpoint = train(frames, config, FrameSpec(image_size=TINY_SIZE), TrainOptions(epochs=1, device="cpu"))
    path = tmp_path / "m.pt"
    checkpoint.save(path)
    detector = Detector.load(path, method="vaegan-attn-z", device="cpu")
    state = detector.checkpoint.state_dict
    assert len(frames) - checkpoint.metadata["validation_frames"] > 12
    for name, side in (("error_statistics", TINY_SIZE), ("region_statistics", TINY_SIZE // 2)):
        assert state[f"{name}.codes"].shape == (12, config.latent_dim)
        assert state[f"{name}.maps"].shape == (12, side, side)  # σ 4: kept at half resolution
    detections = detector.score_arrays(blob_frames(4, seed=1))
    for d in detections:
        assert d.score == pytest.approx(float(d.anomaly_map.max())) and d.anomaly_map.min() >= 0
    with pytest.raises(ValueError, match="latent codes"):
        detector.model.error_statistics(torch.zeros(1, TINY_SIZE, TINY_SIZE))


def test_coarse_reference_maps_are_kept_at_a_lower_resolution_and_measure_alike() -> None:
    """A map smoothed by σ 8 is kept at a quarter of the resolution (a sixteenth of the
    bytes); its z is close to that of the same statistics kept at full resolution. A
    checkpoint that kept them at full resolution still loads, and measures as before."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(40, 3, generator=generator)
    maps = torch.rand(40, 64, 64, generator=generator)
    frames = torch.rand(5, 64, 64, generator=generator)
    frame_codes = torch.randn(5, 3, generator=generator)
    strided = NeighbourStatistics(64, blur=8.0, neighbours=10)
    strided.fit([(codes, maps)])
    assert strided.stride == 4 and strided.maps.shape == (40, 16, 16)
    full = NeighbourStatistics(64, blur=8.0, neighbours=10)
    full.maps = torch.zeros(0, 64, 64, dtype=torch.float16)  # as saved before strides
    full.fit([(codes, maps)])
    assert full.stride == 1 and full.maps.shape == (40, 64, 64)
    z, z_full = strided(frames, frame_codes), full(frames, frame_codes)
    inner = (slice(None), slice(8, -8), slice(8, -8))  # away from the border, where padding differs
    gap = (z - z_full)[inner].abs()
    assert gap.mean() < 0.1 * z_full.mean() and gap.max() < 0.15 * z_full.max()
    reloaded = NeighbourStatistics(64, blur=8.0, neighbours=10)
    reloaded.load_state_dict(full.state_dict())
    assert reloaded.stride == 1
    torch.testing.assert_close(reloaded(frames, frame_codes), z_full)


def _near(y: int, x: int, radius: int = 2) -> set[tuple[int, int]]:
    return {(y + dy, x + dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)}
