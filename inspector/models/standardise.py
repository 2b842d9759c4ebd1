"""A map measured against normal frames: how unusual each pixel's value is *at that pixel*.

A fixed camera sees every part at the same place, so each pixel has its own normal range:
a tile's edge always reconstructs worse than its face, and the discriminator always looks
at some places more than others. Normal frames give each pixel's mean μ and spread σ of
a (smoothed) map m; a new frame's map becomes
    z = max(0, (G_σ * m − μ) / σ)
so a pixel counts in units of its own normal variation, and only above normal. A defect is
local, so the frame's score is the peak of z rather than its mean.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from inspector.models.glimpse import gaussian_blur

STD_FLOOR = 1e-3  # a pixel that never varied on normal frames must not divide by zero


class PixelStatistics(nn.Module):
    """Per-pixel mean and spread of a map on normal frames, kept in buffers (saved with the weights)."""

    def __init__(self, size: int, blur: float):
        super().__init__()
        self.blur = blur
        self.register_buffer("mean", torch.zeros(size, size))
        self.register_buffer("std", torch.ones(size, size))

    def _smooth(self, maps: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(maps[:, None], self.blur)[:, 0] if self.blur > 0 else maps

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> None:
        """Learn μ and σ from batches of maps (N, H, W) of normal frames, summed as they come
        (across batches in float64 on the host: any device), so thousands of frames need no
        more memory than one batch."""
        count, total, squares = 0, 0.0, 0.0
        for maps in batches:
            smooth = self._smooth(maps)
            count += len(smooth)
            total = total + smooth.sum(dim=0).cpu().double()
            squares = squares + smooth.pow(2).sum(dim=0).cpu().double()
        if not count:
            raise ValueError("no normal frames to learn the per-pixel statistics from")
        mean = total / count
        variance = (squares / count - mean.pow(2)).clamp_min(0.0)
        self.mean.copy_(mean)
        self.std.copy_(variance.sqrt() + STD_FLOOR)

    @torch.no_grad()
    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """z (N, H, W) ≥ 0: how far above its normal value each pixel of the maps is."""
        return ((self._smooth(maps) - self.mean) / self.std).clamp_min(0.0)
