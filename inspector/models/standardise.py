"""A map measured against normal frames: how unusual each pixel's value is *at that pixel*.

A fixed camera sees every part at the same place, so each pixel has its own normal range:
a tile's edge always reconstructs worse than its face, and the discriminator always looks
at some places more than others. Normal frames give each pixel's mean μ and spread σ of
a (smoothed) map m; a new frame's map becomes
    z = max(0, (G_σ * m − μ) / σ)
so a pixel counts in units of its own normal variation, and only above normal. A defect is
local, so the frame's score is the peak of z rather than its mean. Where the normal frames
are of several kinds, μ and σ can come from the normal frames nearest the one scored
(NeighbourStatistics) instead of from all of them (PixelStatistics).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from inspector.models.blocks import gaussian_blur

STD_FLOOR = 1e-3  # a pixel that never varied on normal frames must not divide by zero


def _smooth(maps: torch.Tensor, blur: float) -> torch.Tensor:
    return gaussian_blur(maps[:, None], blur)[:, 0] if blur > 0 else maps


def evenly_spaced(n: int, most: int) -> torch.Tensor:
    """Indices of at most ``most`` of ``n`` items, spread evenly (all of them when n ≤ most)."""
    return torch.linspace(0, n - 1, min(n, most)).round().long()


class PixelStatistics(nn.Module):
    """Per-pixel mean and spread of a map on normal frames, kept in buffers (saved with the weights)."""

    def __init__(self, size: int, blur: float):
        super().__init__()
        self.blur = blur
        self.register_buffer("mean", torch.zeros(size, size))
        self.register_buffer("std", torch.ones(size, size))

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> None:
        """Learn μ and σ from batches of maps (N, H, W) of normal frames, summed as they come
        (across batches in float64 on the host: any device), so thousands of frames need no
        more memory than one batch."""
        count, total, squares = 0, 0.0, 0.0
        for maps in batches:
            smooth = _smooth(maps, self.blur)
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
    def forward(self, maps: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, H, W) ≥ 0: how far above its normal value each pixel of the maps is (the same
        normal for every frame: ``codes`` play no part, see NeighbourStatistics)."""
        return ((_smooth(maps, self.blur) - self.mean) / self.std).clamp_min(0.0)


class NeighbourStatistics(nn.Module):
    """μ and σ of a map at each pixel over the k normal frames most like the frame scored.

    Where the normal frames are of several kinds (tiles of other shapes, other finishes,
    other lighting), statistics over all of them mix the kinds and a pixel's σ is that of
    the mixture. Measured against the frames nearest in the model's latent space, a frame
    meets the spread of its own kind (on the magnetic tiles, image AUROC 0.78 -> 0.93).
    The smoothed map of every reference frame (at most MAX_REFERENCES, float16) is kept
    with its latent code, so the buffers grow with the training set. A map smoothed by σ
    holds nothing finer than about σ pixels, so it is kept at 1/stride of the resolution
    (the largest power of two up to σ/2: 1/4 for σ 8, full for σ 1): a sixteenth of the
    bytes at σ 8. The frame's z is computed there too and resized (bilinear) to its map.

    The nearer half of the k (the ⌊k/2⌋+1 nearest) weigh 1 each; beyond, a reference's weight
    falls smoothly with its latent distance, to nothing at the distance of the (k+1)-th: a
    reference that leaves the k weighed nothing already, so μ and σ move smoothly with the
    frame's code. With equal weights, a near-tie at the k-th place let tiny differences of the
    code (a GPU's TF32 convolutions) swap a reference and jump the z: a CPU against GPU score
    gap of 13% of the scores' spread on the device check. Checkpoints saved before the
    weighting load with equal weights and score as before.
    """

    MAX_REFERENCES = 1024

    def __init__(self, size: int, blur: float, neighbours: int):
        super().__init__()
        if neighbours < 1:
            raise ValueError(f"neighbours must be a number of frames (1 or more), not {neighbours}")
        self.blur = blur
        self.neighbours = neighbours
        self.size = size
        stride = 1  # the largest power of two up to σ/2 that divides the map's side
        while 2 * stride <= blur / 2 and size % (2 * stride) == 0:
            stride *= 2
        self.register_buffer("codes", torch.zeros(0, 1))
        self.register_buffer("maps", torch.zeros(0, size // stride, size // stride, dtype=torch.float16))
        self.register_buffer("weighted", torch.tensor(True))

    @property
    def stride(self) -> int:
        """From the buffer, not the constructor: a checkpoint saved before strides loads at 1."""
        return self.size // self.maps.shape[-1]

    @torch.no_grad()
    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep the (latent code (N, D), map (N, H, W)) batches of normal frames as references;
        an evenly spaced MAX_REFERENCES of them if there are more (select them before, with
        ``evenly_spaced``, to spare computing and holding the others' maps)."""
        codes, maps = [], []
        for frame_codes, frame_maps in batches:
            codes.append(frame_codes.flatten(1).float())
            maps.append(F.avg_pool2d(_smooth(frame_maps, self.blur)[:, None], self.stride)[:, 0].half())
        if not codes:
            raise ValueError("no normal frames to learn the per-pixel statistics from")
        keep = evenly_spaced(sum(len(c) for c in codes), self.MAX_REFERENCES)
        self.codes = torch.cat(codes)[keep]
        self.maps = torch.cat(maps)[keep]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # The buffers' sizes depend on the training set: take the saved ones before loading.
        for name in ("codes", "maps"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.maps.device))
        state_dict.setdefault(prefix + "weighted", torch.tensor(False))  # saved before the weighting
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _neighbour_weights(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices (N, k) of each frame's k nearest references, their weights (N, k), summing to 1)."""
        k = min(self.neighbours, len(self.codes))
        nearest = torch.cdist(codes.flatten(1).float(), self.codes).topk(
            min(k + 1, len(self.codes)), largest=False
        )
        indices, distances = nearest.indices[:, :k], nearest.values
        if not self.weighted or len(self.codes) == k:
            return indices, torch.full(indices.shape, 1.0 / k, device=codes.device)
        edge, middle = distances[:, k:], distances[:, k // 2 : k // 2 + 1]
        t = ((edge - distances[:, :k]) / (edge - middle).clamp_min(torch.finfo(edge.dtype).tiny)).clamp(0, 1)
        weights = t * t * (3 - 2 * t)  # smoothstep: no kink where a reference enters or leaves
        total = weights.sum(dim=1, keepdim=True)
        # All k as far as the next one (a tie): nothing to prefer, equal weights.
        return indices, torch.where(total > 0, weights / total.clamp_min(1e-12), 1.0 / k)

    @torch.no_grad()
    def forward(self, maps: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, H, W) ≥ 0 of each frame's map against its nearest references (by latent code)."""
        if codes is None:
            raise ValueError("NeighbourStatistics needs the frames' latent codes")
        indices, weights = self._neighbour_weights(codes)
        references = self.maps[indices].float()  # (N, k, H, W)
        # Weighted sums as batched products, the deviations squared in place: torch's std over a
        # middle dimension was 5x slower. Not E[m²] − E[m]²: where the references agree, that
        # difference of near-equal sums is float32 rounding, which CPUs round differently (a
        # frame's score moved 3% between two x86 machines), and a floor of 1e-3 does not hide it.
        mean = torch.einsum("nk,nkhw->nhw", weights, references)
        spread = torch.einsum("nk,nkhw->nhw", weights, references.sub_(mean[:, None]).square_())
        std = spread.clamp_min(0.0).sqrt() + STD_FLOOR
        smooth = _smooth(maps, self.blur)
        if self.stride == 1:
            return ((smooth - mean) / std).clamp_min(0.0)
        z = ((F.avg_pool2d(smooth[:, None], self.stride) - mean[:, None]) / std[:, None]).clamp_min(0.0)
        return F.interpolate(z, maps.shape[-2:], mode="bilinear")[:, 0]
