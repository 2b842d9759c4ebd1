"""A glimpse: find the object in a frame and resample it to a fixed square (hard spatial attention).

The object is where the smoothed frame rises above its own background level (its median)
by more than a threshold, or falls below it where the objects are darker than their
background (a silhouette before a light, a dark part on a light table: ``glimpse_polarity``).
Its bounding box, made square and enlarged so the object fills a fixed fraction of the side
(MNIST's 20 px in 28), defines an affine map θ from glimpse to frame coordinates, as in a
spatial transformer: the glimpse is the frame sampled through θ, and a map computed on the
glimpse goes back to the frame through θ⁻¹.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from inspector.models.blocks import gaussian_blur


@dataclass
class GlimpseFields:
    """How a family that sees glimpses finds the object (part of its config)."""

    glimpse_size: int = 28  # side of the glimpse, what the networks see
    glimpse_blur: float = 1.0  # σ of the smoothing used to find the object and to resample it
    glimpse_threshold: float = 0.25  # object = smoothed frame above its median by this much
    glimpse_fill: float = 20 / 28  # fraction of the glimpse side the object spans
    glimpse_polarity: float = 1.0  # 1: objects brighter than their background; -1: darker


def object_mask(x: torch.Tensor, sigma: float, threshold: float, polarity: float = 1.0) -> torch.Tensor:
    """Where the object is (N, H, W): the smoothed frame above its own median by ``threshold``
    (below it, with ``polarity`` -1)."""
    smooth = gaussian_blur(x.mean(dim=1, keepdim=True), sigma)[:, 0]
    return polarity * (smooth - smooth.flatten(1).median(dim=1).values[:, None, None]) > threshold


def object_box(x: torch.Tensor, sigma: float, threshold: float, polarity: float = 1.0) -> torch.Tensor:
    """The object's bounding box (N, 4): top, bottom, left, right pixel (inclusive); the whole
    frame where nothing is found."""
    return mask_box(object_mask(x, sigma, threshold, polarity)).to(x.dtype)


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """The bounding box (N, 4) of a mask (N, H, W), as ``object_box``."""
    rows, cols = mask.any(dim=2), mask.any(dim=1)

    def extent(hit: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(size, dtype=torch.float32, device=mask.device).expand_as(hit)
        first = torch.where(hit, index, float(size)).amin(dim=1)
        last = torch.where(hit, index, -1.0).amax(dim=1)
        found = hit.any(dim=1)
        return torch.where(found, first, 0.0), torch.where(found, last, size - 1.0)

    return torch.stack([*extent(rows, mask.shape[-2]), *extent(cols, mask.shape[-1])], dim=1)


def box_fraction(mask: torch.Tensor) -> torch.Tensor:
    """The fraction of each frame (N,) its object's (``object_mask``) bounding box covers (1:
    nothing found)."""
    top, bottom, left, right = mask_box(mask).unbind(dim=1)
    return (bottom - top + 1) * (right - left + 1) / (mask.shape[-2] * mask.shape[-1])


def glimpse_span(box: torch.Tensor, fill: float) -> torch.Tensor:
    """The side in frame pixels (N,) of the square glimpse of objects in boxes (N, 4): the box's
    longer side, enlarged so the object spans ``fill`` of it."""
    top, bottom, left, right = box.unbind(dim=1)
    return (torch.maximum(bottom - top, right - left) + 1) / fill


def locate_with(x: torch.Tensor, fields: GlimpseFields) -> torch.Tensor:
    """θ of ``locate`` with a config's settings."""
    return locate(
        x, fields.glimpse_blur, fields.glimpse_threshold, fields.glimpse_fill, fields.glimpse_polarity
    )


def locate(
    x: torch.Tensor, sigma: float, threshold: float, fill: float, polarity: float = 1.0
) -> torch.Tensor:
    """θ (N, 2, 3): glimpse → frame, normalised coordinates; the whole frame where nothing is found."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    box = object_box(x, sigma, threshold, polarity)
    top, bottom, left, right = box.unbind(dim=1)
    side = glimpse_span(box, fill)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = side / w
    theta[:, 1, 1] = side / h
    theta[:, 0, 2] = (left + right + 1) / w - 1
    theta[:, 1, 2] = (top + bottom + 1) / h - 1
    return theta


def glimpse(x: torch.Tensor, theta: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """The smoothed frame seen through θ: (N, C, size, size); outside the frame, its edge."""
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(gaussian_blur(x, sigma), grid, padding_mode="border", align_corners=False)


def unglimpse(maps: torch.Tensor, theta: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Maps (N, C, s, s) on the glimpse put back in frame coordinates (N, C, *size); 0 outside."""
    height, width = (size, size) if isinstance(size, int) else size
    scale = theta[:, :, :2].diagonal(dim1=1, dim2=2)
    inverse = torch.zeros_like(theta)
    inverse[:, 0, 0], inverse[:, 1, 1] = 1 / scale[:, 0], 1 / scale[:, 1]
    inverse[:, :, 2] = -theta[:, :, 2] / scale
    grid = F.affine_grid(inverse, [maps.shape[0], maps.shape[1], height, width], align_corners=False)
    return F.grid_sample(maps, grid, padding_mode="zeros", align_corners=False)
