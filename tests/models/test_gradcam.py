"""Grad-CAM against a hand-computed case, and the properties attention scoring relies on."""

from __future__ import annotations

import torch
from torch import nn

from inspector.models.gradcam import capture_output, discriminator_attention, grad_cam, normalise_per_frame

from ..conftest import blob_frames, build_model, tiny_config


def test_grad_cam_matches_hand_computation() -> None:
    # Two channels on a 2x2 grid; target y = 3*sum(A0) - 1*sum(A1), so dy/dA0 = 3, dy/dA1 = -1.
    a = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[4.0, 0.0], [1.0, 1.0]]]])
    grads = torch.stack([torch.full((2, 2), 3.0), torch.full((2, 2), -1.0)])[None]
    cam = grad_cam(a, grads, size=(2, 2))
    # w = (3, -1); ReLU(3*A0 - A1) = ReLU([[-1, 6], [-1, 2]]) = [[0, 6], [0, 2]]
    assert torch.allclose(cam, torch.tensor([[[0.0, 6.0], [0.0, 2.0]]]))
    assert torch.allclose(normalise_per_frame(cam), torch.tensor([[[0.0, 1.0], [0.0, 1 / 3]]]))


def test_grad_cam_upsamples_to_frame_size() -> None:
    cam = grad_cam(torch.rand(3, 4, 5, 5), torch.rand(3, 4, 5, 5), size=(20, 20))
    assert cam.shape == (3, 20, 20) and (cam >= 0).all()


def test_discriminator_attention_uses_gradient_of_real_logit() -> None:
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    head = nn.Linear(2 * 4, 1, bias=False)
    with torch.no_grad():
        head.weight[:] = torch.tensor([[1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]])
    model = nn.Sequential(conv, nn.Flatten(), head)
    x = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])
    attention = discriminator_attention(lambda t: model(t).squeeze(1), conv, x)
    # A = (x, 2x); dlogit/dA = (+1, -1) everywhere, so w = (1, -1), cam = ReLU(x - 2x) = 0.
    assert torch.allclose(attention, torch.zeros(1, 2, 2))
    with capture_output(conv) as outputs:
        model(x)
    assert len(outputs) == 1
    assert not conv._forward_hooks  # the hook is gone after the block


def test_attention_is_batch_independent_and_bn_in_eval() -> None:
    model = build_model(tiny_config()).eval()
    frames = torch.from_numpy(blob_frames(6, seed=1))
    alone = model.score(frames[:1], "vaegan-attn")
    together = model.score(frames, "vaegan-attn")
    assert torch.allclose(alone.attention[0], together.attention[0], atol=1e-6)
    assert torch.allclose(alone.score[0], together.score[0], atol=1e-6)
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d))
