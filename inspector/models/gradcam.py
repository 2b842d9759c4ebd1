"""Grad-CAM (Selvaraju et al. 2017) on the discriminator, with the hook kept apart from the math.

For a layer with activations A (N, K, h, w) and a target logit y, the weights are the
spatial mean of ∂y/∂A, and the map is ReLU(Σ_k w_k A_k), upsampled to the frame size.
The target here is the discriminator's *real* logit: the regions that make a frame look
real (normal) to a discriminator trained on normal frames only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The Grad-CAM map (N, H, W) from a layer's activations and the target's gradients there."""
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]


def normalise_per_frame(cam: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each map to a maximum of 1 so attention weights, not scales, differ between frames."""
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(eps)


@contextmanager
def capture_output(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record what ``layer`` returns during the forward passes inside the block."""
    outputs: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


def discriminator_attention(
    discriminator: Callable[[torch.Tensor], torch.Tensor], layer: nn.Module, x: torch.Tensor
) -> torch.Tensor:
    """Normalised Grad-CAM of the real logit at ``layer``, one map per frame (N, H, W).

    The logits are summed before differentiating; since a frame's logit depends on that
    frame alone, each frame's gradient is exactly its own.
    """
    with torch.enable_grad(), capture_output(layer) as outputs:
        x = x.detach().requires_grad_(False)
        logits = discriminator(x)
        activations = outputs[-1]
        (gradients,) = torch.autograd.grad(logits.sum(), activations)
    cam = grad_cam(activations.detach(), gradients, size=tuple(x.shape[-2:]))
    return normalise_per_frame(cam)
