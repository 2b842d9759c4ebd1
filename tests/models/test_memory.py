"""The memory families: a pretrained backbone's patches of normal frames, and the nearest of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.config import FrameSpec
from inspector.detector import Detector
from inspector.models import memory
from inspector.models.backbone import DIM, Backbone
from inspector.models.blocks import gaussian_blur
from inspector.models.memory import PatchMemory, greedy_coreset
from inspector.training import SMALL_SET, TrainingError, TrainOptions, split_validation, train

from ..conftest import TINY_SIZE, blob_frames, build_model, tiny_config

TINY_MEMORY = {"attention_size": 16}
ELONGATED = FrameSpec(image_size=32, width=96)


def striped_frames(n: int, seed: int = 0, defect: bool = False) -> np.ndarray:
    """Elongated normal frames (N, 1, 32, 96): a vertical grating with noise; a defect is a dark spot."""
    rng = np.random.default_rng(seed)
    xx = np.arange(96)[None, :]
    frames = np.empty((n, 1, 32, 96), np.float32)
    for i in range(n):
        phase = rng.uniform(0, 2 * np.pi)
        frame = 0.5 + 0.2 * np.sin(2 * np.pi * xx / 8 + phase) + rng.normal(0, 0.02, (32, 96))
        if defect:
            frame[12:20, 60:68] = 0.05
        frames[i, 0] = np.clip(frame, 0, 1)
    return frames


def test_backbone_takes_any_shape_and_stays_frozen() -> None:
    backbone = Backbone()
    assert backbone(torch.rand(2, 1, 40, 72)).shape == (2, DIM, 5, 9)
    assert backbone(torch.rand(1, 3, 17, 33)).shape == (1, DIM, 3, 5)
    backbone.train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


def test_greedy_coreset_keeps_a_rare_cluster() -> None:
    """Five clusters, one of five points among 400 others: k-centre keeps one of each."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 32, generator=generator) * 10
    sizes = [100, 100, 100, 100, 5]
    points = torch.cat(
        [c + 0.1 * torch.randn(k, 32, generator=generator) for c, k in zip(centres, sizes, strict=True)]
    )
    owner = torch.repeat_interleave(torch.arange(5), torch.tensor(sizes))
    chosen, _ = greedy_coreset(points, 5, torch.Generator().manual_seed(1))
    assert sorted(owner[chosen].tolist()) == [0, 1, 2, 3, 4]


def test_memory_distance_is_exact_and_zero_on_remembered_patches() -> None:
    generator = torch.Generator().manual_seed(0)
    patches = torch.randn(300, 8, generator=generator) * 20
    memory = PatchMemory(8)
    memory.fit(patches, size=300)
    queries = torch.randn(2, 8, 3, 5, generator=generator) * 20
    flat = queries.permute(0, 2, 3, 1).reshape(-1, 8)
    exact = torch.cdist(flat, patches, compute_mode="donot_use_mm_for_euclid_dist").amin(dim=1)
    torch.testing.assert_close(memory.distances(queries).flatten(), exact, rtol=1e-6, atol=1e-5)
    assert memory.distances(patches[:6].T.reshape(1, 8, 2, 3)).abs().max() < 1e-3
    with pytest.raises(RuntimeError, match="empty"):
        PatchMemory(8).distances(queries)


def test_patch_memory_on_elongated_frames(tmp_path: Path) -> None:
    """Frames keep their aspect (FrameSpec.width); maps come back at the frame's shape; a local
    defect scores above every normal frame, its map peaks on it; the Grad-CAM map is there."""
    config = tiny_config("patch-memory", **TINY_MEMORY)
    checkpoint = train(striped_frames(24), config, ELONGATED, TrainOptions(epochs=1, device="cpu"))
    checkpoint.save(tmp_path / "m.pt")
    normal, defective = striped_frames(6, seed=1), striped_frames(2, seed=2, defect=True)
    for method in ("patch-max", "patch-max-inner", "patch-max-or-mean", "patch-mean"):
        detector = Detector.load(tmp_path / "m.pt", method=method, device="cpu")
        found = detector.score_arrays(np.concatenate([normal, defective]))
        scores = np.array([d.score for d in found])
        assert scores[6:].min() > scores[:6].max(), method
        peak = np.unravel_index(found[6].anomaly_map.argmax(), found[6].anomaly_map.shape)
        assert 8 <= peak[0] <= 24 and 52 <= peak[1] <= 76, (method, peak)
        assert found[0].anomaly_map.shape == found[0].attention.shape == (32, 96)
        assert found[0].reconstruction.shape == (1, 32, 96)
        assert 0 <= found[0].attention.min() and found[0].attention.max() <= 1 + 1e-6
        again = Detector(checkpoint, method=method, device="cpu").score_arrays(normal[:2])
        np.testing.assert_array_equal([d.score for d in again], scores[:2])
    assert Detector(checkpoint, device="cpu").method == "patch-max"  # the family's default


def test_a_few_frames_are_remembered_whole_more_as_a_coreset() -> None:
    model = build_model(tiny_config("patch-memory", **TINY_MEMORY)).eval()
    cells = (32 // 8) * (96 // 8)
    for count, kept in ((4, 4 * cells), (model.config.whole_below, model.config.whole_below * cells // 10)):
        model.fill(torch.from_numpy(striped_frames(count)))
        assert len(model.memory.bank) == kept, count


def test_a_small_set_remembers_its_held_out_frames_after_the_threshold() -> None:
    """Below SMALL_SET frames the memory takes in the held-out ones once their scores set the
    threshold: scored again, they are nearer to it than they were then; a large set does not."""
    config = tiny_config("patch-memory", **TINY_MEMORY)
    for count, remembered in ((8, True), (SMALL_SET, False)):
        frames = striped_frames(count)
        checkpoint = train(frames, config, ELONGATED, TrainOptions(epochs=1, device="cpu"))
        _, held = split_validation(count, 0.1, 0)
        detector = Detector(checkpoint, method="patch-mean", device="cpu")
        now = np.array([d.score for d in detector.score_arrays(frames[held])])
        then = np.array(checkpoint.metadata["heldout_scores"]["patch-mean"])
        assert (now < then - 1e-3).all() if remembered else np.allclose(now, then, atol=1e-4), count


def test_a_memory_of_fewer_than_five_frames_takes_its_threshold_from_each_by_the_others() -> None:
    """With none held out, a memory of every frame would score its own frames 0 and flag any
    other normal frame; each frame scored by a memory of the others sets the threshold instead."""
    config = tiny_config("patch-memory", **TINY_MEMORY)
    checkpoint = train(striped_frames(3), config, ELONGATED, TrainOptions(epochs=1, device="cpu"))
    assert checkpoint.metadata["threshold_from"] == "each frame by a memory of the others"
    detector = Detector(checkpoint, method="patch-mean", device="cpu")
    assert detector.threshold > 0
    unseen = [d.score for d in detector.score_arrays(striped_frames(4, seed=5))]
    assert max(unseen) <= detector.threshold
    defects = [d.score for d in detector.score_arrays(striped_frames(2, seed=5, defect=True))]
    assert min(defects) > detector.threshold


def test_max_or_mean_catches_a_small_defect_and_a_sprawling_change() -> None:
    """patch-max-or-mean: the peak and the mean distance, each in standard deviations of the
    held-out normal frames' own, the larger: a dark spot and a grating faded everywhere both
    score above every normal frame. Checkpoints saved before it (no such statistics) still load."""
    config = tiny_config("patch-memory", **TINY_MEMORY)
    checkpoint = train(striped_frames(24), config, ELONGATED, TrainOptions(epochs=1, device="cpu"))
    faded = 0.5 + 0.5 * (striped_frames(2, seed=3) - 0.5)
    frames = np.concatenate([striped_frames(6, seed=1), striped_frames(2, seed=2, defect=True), faded])
    scores = [d.score for d in Detector(checkpoint, "patch-max-or-mean", "cpu").score_arrays(frames)]
    assert min(scores[6:]) > max(scores[:6])
    older = {k: v for k, v in checkpoint.state_dict.items() if not k.startswith("signal_")}
    model = build_model(config)
    model.load_state_dict(older)
    torch.testing.assert_close(model.memory.bank, checkpoint.state_dict["memory.bank"])


def test_the_ensemble_averages_its_methods_in_standard_deviations_of_the_held_out_frames() -> None:
    """patch-ensemble: the mean of its methods' scores, each counted in standard deviations of the
    held-out normal frames' own (so theirs average 0), its map the first method's. A checkpoint
    saved before it (no such statistics) still scores with the others and refuses it."""
    config = tiny_config("patch-memory", ensemble=("patch-mean", "patch-max"), **TINY_MEMORY)
    checkpoint = train(striped_frames(24), config, ELONGATED, TrainOptions(epochs=1, device="cpu"))
    held = checkpoint.metadata["heldout_scores"]
    assert abs(np.mean(held["patch-ensemble"])) < 1e-4
    frames = np.concatenate([striped_frames(3, seed=1), striped_frames(1, seed=2, defect=True)])
    methods = ("patch-mean", "patch-max", "patch-ensemble")
    found = {m: Detector(checkpoint, m, "cpu").score_arrays(frames) for m in methods}
    counted = []
    for method in config.ensemble:
        mean, spread = memory.normal_statistics(torch.tensor(held[method])[:, None])
        counted.append((np.array([d.score for d in found[method]]) - mean.item()) / spread.item())
    ensemble = [d.score for d in found["patch-ensemble"]]
    np.testing.assert_allclose(ensemble, np.mean(counted, axis=0), rtol=1e-4)
    np.testing.assert_array_equal(found["patch-ensemble"][3].anomaly_map, found["patch-mean"][3].anomaly_map)
    older = build_model(config)
    older.load_state_dict({k: v for k, v in checkpoint.state_dict.items() if not k.startswith("ensemble_")})
    x = torch.from_numpy(frames)
    assert older.eval().score(x, "patch-max").score.shape == (4,)
    with pytest.raises(ValueError, match="retrain"):
        older.score(x, "patch-ensemble")
    with pytest.raises(ValueError, match="an ensemble of"):
        build_model(tiny_config("patch-memory", ensemble=("patch-ensemble",)))


def test_the_map_is_smoothed_as_training_chose_and_the_version_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every method's anomaly map is the distance map smoothed by ``map_smooth`` cells (scores
    unchanged). Fields added since models were first saved, at the value in effect before them,
    stay out of the version: those models keep theirs."""
    frames = striped_frames(2, seed=2, defect=True)
    options = TrainOptions(epochs=1, device="cpu")
    configs = {sigma: tiny_config("patch-memory", map_smooth=sigma, **TINY_MEMORY) for sigma in (0.5, 2.0)}
    checkpoints = {sigma: train(striped_frames(8), c, ELONGATED, options) for sigma, c in configs.items()}
    found = {sigma: Detector(c, "patch-mean", "cpu").score_arrays(frames) for sigma, c in checkpoints.items()}
    assert [d.score for d in found[0.5]] == [d.score for d in found[2.0]]
    model = build_model(checkpoints[2.0].model_config)
    model.load_state_dict(checkpoints[2.0].state_dict)
    x = torch.from_numpy(frames)
    scores, maps = model.eval().validation_outputs(x, ("patch-mean", "patch-max"), [(2.0, False)])
    expected = maps[0]  # what training's choice of the map compares: the map scoring gives
    for method, score in scores.items():  # and the scores, without the Grad-CAM network
        torch.testing.assert_close(score, model.score(x, method).score)
    np.testing.assert_allclose(found[2.0][0].anomaly_map, expected[0].numpy(), rtol=1e-5)
    assert found[2.0][0].anomaly_map.max() < found[0.5][0].anomaly_map.max()  # the spot's peak spreads out
    versions = {sigma: c.version for sigma, c in checkpoints.items()}
    assert versions[0.5] != versions[2.0]
    monkeypatch.setattr(type(checkpoints[0.5].model_config), "UNVERSIONED", {})
    assert checkpoints[0.5].version != versions[0.5]  # the defaults would have changed it


def test_the_map_against_each_cells_normal_distances(tmp_path: Path) -> None:
    """``map_z``: each cell's distance counted in standard deviations of that cell's distances on
    normal training frames (measured in training, saved with the weights); scores unchanged, the
    defect still the map's peak. Too few frames to measure them: training refuses."""
    options = TrainOptions(epochs=1, device="cpu")
    checkpoints = {
        z: train(striped_frames(30), tiny_config("patch-memory", map_z=z, **TINY_MEMORY), ELONGATED, options)
        for z in (False, True)
    }
    checkpoints[True].save(tmp_path / "m.pt")
    model = Detector.load(tmp_path / "m.pt", device="cpu").model
    assert model.cell_mean.shape == model.cell_std.shape == (4, 12)  # the 32×96 frame's cells
    assert (model.cell_std > 0).all()
    frames = striped_frames(2, seed=2, defect=True)
    found = {z: Detector(c, "patch-max", "cpu").score_arrays(frames) for z, c in checkpoints.items()}
    assert [d.score for d in found[True]] == [d.score for d in found[False]]
    x = torch.from_numpy(frames)
    cells = model.memory.distances(model.backbone(x))[:, None]
    z = (cells - model.cell_mean) / model.cell_std
    expected = model.views(x).to_frame(gaussian_blur(z, model.config.map_smooth))[:, 0]
    np.testing.assert_allclose(found[True][0].anomaly_map, expected[0].numpy(), rtol=1e-4, atol=1e-5)
    _row, column = np.unravel_index(found[True][0].anomaly_map.argmax(), (32, 96))
    assert 52 <= column < 76  # on the dark spot at columns 60-68 (rows: 4 cells see all 32)
    with pytest.raises(ValueError, match="map_z"):
        train(striped_frames(8), tiny_config("patch-memory", map_z=True, **TINY_MEMORY), ELONGATED, options)


def test_glimpse_memory_scores_another_object_higher() -> None:
    """Discs at jittered places are normal; a square of the same brightness is not."""
    config = tiny_config("glimpse-memory", backbone_size=32, glimpse_size=16)
    checkpoint = train(blob_frames(24), config, FrameSpec(image_size=TINY_SIZE), TrainOptions(epochs=1))
    square = np.full((2, 1, TINY_SIZE, TINY_SIZE), 0.0, np.float32)
    square[0, 0, 9:21, 10:22] = 0.8
    square[1, 0, 12:24, 8:20] = 0.8
    frames = np.concatenate([blob_frames(6, seed=5), square])
    for method in ("glimpse-max", "glimpse-mean", "glimpse-pixels"):
        found = Detector(checkpoint, method=method, device="cpu").score_arrays(frames)
        scores = np.array([d.score for d in found])
        assert scores[6:].min() > scores[:6].max(), method
        assert found[0].attention is not None and found[0].anomaly_map.shape == (TINY_SIZE, TINY_SIZE)


def test_glimpse_pixels_is_the_glimpse_knn_peer_and_old_models_refuse_it() -> None:
    """glimpse-pixels scores what the classic peer does (5-NN on the 28×28 glimpses of the
    training frames); a model saved before it existed loads, scores its other methods and its
    ensemble (of the methods it had), and refuses this one with a clear error."""
    from bench.peers import glimpse_knn

    seen, held = blob_frames(24), blob_frames(4, seed=7)
    frames = np.concatenate([blob_frames(3, seed=5), np.zeros((1, 1, TINY_SIZE, TINY_SIZE), np.float32)])
    model = build_model(tiny_config("glimpse-memory", backbone_size=32, glimpse_size=16)).eval()
    model.fit_normal_statistics(torch.from_numpy(held), torch.from_numpy(seen))
    x = torch.from_numpy(frames)
    found = model.score(x, "glimpse-pixels").score.numpy()
    np.testing.assert_allclose(found, glimpse_knn(seen, frames), rtol=1e-4, atol=1e-5)
    assert model.ensemble == ("glimpse-mean", "glimpse-max")  # unless training names its members
    before = {k: v for k, v in model.state_dict().items() if not k.startswith("frame_memory.")}
    old = build_model(model.config).eval()
    old.load_state_dict(before)
    for method in ("glimpse-mean", "glimpse-ensemble"):
        torch.testing.assert_close(old.score(x, method).score, model.score(x, method).score)
    with pytest.raises(ValueError, match="before -pixels existed"):
        old.score(x, "glimpse-pixels")


def test_the_frame_memory_keeps_every_remembered_view_and_a_fixed_subset_of_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "VIEWS_KEPT", 5)
    views = torch.arange(12, dtype=torch.float32)[:, None].repeat(1, 3)
    remembered = torch.zeros(12, dtype=torch.bool)
    remembered[[2, 9]] = True
    kept = memory.FrameMemory(3)
    kept.fit(views, remembered)
    again = memory.FrameMemory(3)
    again.fit(views, remembered)
    assert len(kept.views) == 7 and torch.equal(kept.views, again.views)
    assert {2.0, 9.0} <= set(kept.views[:, 0].tolist())
    assert kept.distances(kept.views[:1]).item() > 0  # the mean of 5 nearest: itself and 4 others


def test_square_families_refuse_elongated_frames() -> None:
    with pytest.raises(TrainingError, match="do not match"):
        train(striped_frames(8), tiny_config(image_size=32), ELONGATED, TrainOptions(epochs=1))


def test_a_checkpoint_scores_with_the_method_training_chose() -> None:
    config = tiny_config("patch-memory", **TINY_MEMORY)
    checkpoint = train(striped_frames(8), config, ELONGATED, TrainOptions(epochs=1, device="cpu"))
    checkpoint.metadata["method"] = "patch-mean"
    assert Detector(checkpoint, device="cpu").method == "patch-mean"
    assert Detector(checkpoint, method="patch-max", device="cpu").method == "patch-max"


def test_the_grad_cam_vaegan_trains_on_a_bounded_number_of_frames() -> None:
    """It only draws the map: after attention_frames frames, steps cost nothing."""
    from inspector.models.memory import MemoryTrainer

    model = build_model(tiny_config("patch-memory", attention_frames=40, **TINY_MEMORY))
    trainer = MemoryTrainer(model)
    x = torch.from_numpy(striped_frames(32))
    assert trainer.step(x) and trainer.step(x)  # 32, then 64 frames shown
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    assert trainer.step(x) == {}
    assert all(torch.equal(v, model.network.state_dict()[k]) for k, v in before.items())


def test_the_inner_peak_leaves_out_the_outermost_cells() -> None:
    """patch-max-inner: a spot in the frame's corner (where the backbone saw its padding) weighs
    nothing in the score, though the map still shows it; patch-max sees it."""
    config = tiny_config("patch-memory", **TINY_MEMORY)
    checkpoint = train(striped_frames(24), config, ELONGATED, TrainOptions(epochs=1, device="cpu"))
    corner = striped_frames(1, seed=3)
    corner[0, 0, :6, :6] = 0.0
    normal = striped_frames(4, seed=4)
    frames = np.concatenate([normal, corner])
    peak = np.array([d.score for d in Detector(checkpoint, "patch-max", "cpu").score_arrays(frames)])
    inner = Detector(checkpoint, "patch-max-inner", "cpu").score_arrays(frames)
    assert peak[-1] > peak[:-1].max()
    assert inner[-1].score < peak[-1] == pytest.approx(inner[-1].anomaly_map.max())


def test_the_memory_draws_each_frames_patches_by_its_pixels_and_keeps_remembered_ones_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond CANDIDATES patches, each frame gives as many, drawn seeded by its own pixels: the
    same frames in another order or batching give the same memory, and a frame added draws
    nothing new from the others' but its own share; a frame marked ``remember`` gives all of
    its patches, up to REMEMBERED in all. (A bank as large as the candidates keeps them all.)"""
    monkeypatch.setattr(memory, "CANDIDATES", 60)  # 4×12 = 48 patches a frame: 20 from each of 3
    config = tiny_config("patch-memory", bank_size=10_000, coreset_fraction=1.0, **TINY_MEMORY)
    model = build_model(config).eval()
    frames = torch.from_numpy(striped_frames(4, seed=5))

    def bank(seen: torch.Tensor, remember: torch.Tensor | None = None, batch: int = 32) -> set[tuple]:
        model.fit_normal_statistics(frames[:2], seen, remember, batch=batch)
        return {tuple(row) for row in model.memory.bank.round(decimals=4).tolist()}

    def patches(frame: torch.Tensor) -> set[tuple]:
        features = model.backbone(frame[None])[0].flatten(1).T
        return {tuple(row) for row in features.round(decimals=4).tolist()}

    three = bank(frames[:3])
    assert len(three) == 60 and all(len(three & patches(f)) == 20 for f in frames[:3])
    assert bank(frames[[2, 0, 1]], batch=1) == three
    remembered = bank(frames, torch.tensor([False, False, False, True]))
    assert remembered == three | patches(frames[3])  # the first three draw as before: 60 / 3
    assert len(bank(frames)) == 4 * 15
    monkeypatch.setattr(memory, "REMEMBERED", 60)  # beyond it, remembered frames draw too: 30 each
    both = bank(frames, torch.tensor([False, False, True, True]))
    assert len(both) == 2 * 30 + 2 * 30 and len(both & patches(frames[3])) == 30


def test_remembered_frames_add_to_the_coreset_and_never_displace_it() -> None:
    """The coreset of the other frames is the same with or without frames to remember, in any
    order of the frames; a remembered frame adds the patches that coreset leaves farther than
    it covers its own (a marked grating: its mark, which then scores low), and a copy of a
    frame it holds adds none."""
    config = tiny_config("patch-memory", bank_size=40, coreset_fraction=1.0, **TINY_MEMORY)
    model = build_model(config).eval()
    plain = torch.from_numpy(striped_frames(3, seed=5))
    marked = torch.from_numpy(striped_frames(1, seed=6, defect=True))

    def fill(frames: torch.Tensor, remember: list[bool] | None = None) -> torch.Tensor:
        model.fill(frames, None if remember is None else torch.tensor(remember))
        return model.memory.bank.clone()

    def peak(bank: torch.Tensor, frame: torch.Tensor) -> float:
        model.memory.bank = bank
        return float(model.memory.distances(model.backbone(frame[None])).max())

    alone = fill(plain)
    assert len(alone) == 40
    assert {tuple(p) for p in fill(plain[[2, 0, 1]]).tolist()} == {tuple(p) for p in alone.tolist()}
    with_mark = fill(torch.cat([plain, marked]), [False, False, False, True])
    torch.testing.assert_close(with_mark[:40], alone)
    assert len(with_mark) > 40 and peak(with_mark, marked[0]) < 0.5 * peak(alone, marked[0])
    assert len(fill(torch.cat([plain, plain[:1]]), [False, False, False, True])) == 40
