"""The glimpse (find, crop, resample the object) and the VAEGAN that works on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.config import FrameSpec
from inspector.detector import Detector
from inspector.models.blocks import gaussian_blur
from inspector.models.glimpse import glimpse, locate, unglimpse
from inspector.models.glimpse_vaegan import GlimpseTrainer
from inspector.training import TrainOptions, split_validation, train

from ..conftest import TINY_SIZE, blob_frames, build_model, tiny_config


def square_frame(top: int, left: int, side: int, size: int = 64) -> torch.Tensor:
    x = torch.full((1, 1, size, size), 0.1)
    x[..., top : top + side, left : left + side] = 1.0
    return x


def test_gaussian_blur_keeps_constants_and_mass() -> None:
    x = torch.full((2, 3, 9, 9), 0.4)
    assert torch.allclose(gaussian_blur(x, 1.5), x)
    spike = torch.zeros(1, 1, 21, 21)
    spike[..., 10, 10] = 1.0
    assert gaussian_blur(spike, 1.0).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_locate_puts_the_object_at_a_canonical_place_and_scale() -> None:
    for top, left, side in [(5, 30, 12), (20, 8, 30)]:
        x = square_frame(top, left, side)
        theta = locate(x, sigma=0.5, threshold=0.3, fill=0.5)
        g = glimpse(x, theta, size=32, sigma=0.5)[0, 0]
        # The square spans half of the glimpse, centred: rows/cols 8..23 bright, the rim dark.
        assert g[12:20, 12:20].min() > 0.9
        assert g[:5].max() < 0.2 and g[-5:].max() < 0.2 and g[:, :5].max() < 0.2
        assert (g > 0.5).sum().item() == pytest.approx(16 * 16, rel=0.15)


def test_unglimpse_returns_a_map_to_where_the_object_is() -> None:
    x = square_frame(10, 20, 16)
    theta = locate(x, sigma=0.5, threshold=0.3, fill=0.5)
    back = unglimpse(torch.ones(1, 1, 32, 32), theta, size=64)[0, 0]
    # The glimpse covers the 32-px square around the object (fill 0.5), zero elsewhere.
    assert back[18, 28].item() == pytest.approx(1.0) and back[0, 0].item() == 0.0
    assert (back > 0.5).sum().item() == pytest.approx(32 * 32, rel=0.1)


def test_nothing_found_means_the_whole_frame() -> None:
    theta = locate(torch.zeros(2, 1, 16, 16), sigma=1.0, threshold=0.2, fill=1.0)
    assert torch.allclose(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3))


def test_glimpse_vaegan_learns_and_scores_at_frame_resolution() -> None:
    torch.manual_seed(0)
    config = tiny_config("vaegan+", glimpse_size=16)
    model = build_model(config)
    trainer = GlimpseTrainer(model)
    x = torch.from_numpy(blob_frames(32))
    first = trainer.validation_loss(x)
    for _ in range(30):
        trainer.step(x)
    model.eval()
    assert trainer.validation_loss(x) < first
    for method in model.scoring_methods:
        out = model.score(x[:4], method)
        assert out.score.shape == (4,) and out.reconstruction.shape == (4, 1, TINY_SIZE, TINY_SIZE)
        assert out.error.shape == (4, TINY_SIZE, TINY_SIZE)
        # A frame's score does not depend on its batch-mates.
        alone = model.score(x[:1], method).score
        assert torch.allclose(alone, out.score[:1], atol=1e-5)


def test_glimpse_vaegan_checkpoint_round_trip(tmp_path) -> None:
    frames = blob_frames(40)
    checkpoint = train(
        frames,
        tiny_config("vaegan+", glimpse_size=16),
        FrameSpec(image_size=TINY_SIZE),
        TrainOptions(epochs=1, device="cpu"),
    )
    checkpoint.save(tmp_path / "m.pt")
    a = Detector(checkpoint, method="vaegan-attn+", device="cpu").score_arrays(frames[:3])
    b = Detector.load(tmp_path / "m.pt", method="vaegan-attn+", device="cpu").score_arrays(frames[:3])
    np.testing.assert_array_equal([d.score for d in a], [d.score for d in b])
    assert a[0].attention is not None and a[0].attention.shape == (TINY_SIZE, TINY_SIZE)


def test_attended_score_is_standardised_on_held_out_normals() -> None:
    """s_pix and s_feat are scaled by their mean and std on the held-out normals, fitted after
    training and kept with the weights: those frames score about 0 on average."""
    frames = blob_frames(40)
    options = TrainOptions(epochs=1, device="cpu")
    config = tiny_config("vaegan+", glimpse_size=16)
    checkpoint = train(frames, config, FrameSpec(image_size=TINY_SIZE), options)
    mean, std = checkpoint.state_dict["signal_mean"], checkpoint.state_dict["signal_std"]
    assert (mean > 0).all() and (std > 0).all() and not torch.equal(std, torch.ones(2))
    model = build_model(checkpoint.model_config)
    model.load_state_dict(checkpoint.state_dict)
    model.eval()
    _, held_out = split_validation(len(frames), options.val_fraction, options.seed)
    scores = model.score(torch.from_numpy(frames[held_out]), "vaegan-attn+").score
    assert abs(float(scores.mean())) < 1e-4


def test_a_darker_object_is_found_with_polarity_minus_one() -> None:
    """A dark disc on a light field is located, with polarity -1, where its bright twin is."""
    bright = torch.from_numpy(blob_frames(4))
    theta = locate(bright, 1.0, 0.25, 20 / 28)
    torch.testing.assert_close(locate(1 - bright, 1.0, 0.25, 20 / 28, polarity=-1.0), theta)
    whole = locate(1 - bright, 1.0, 0.25, 20 / 28)  # looked for as bright: the light field is no object
    assert not torch.allclose(whole, theta)
