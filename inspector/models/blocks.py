"""Building blocks shared by the families: networks, latent draws, the GAN loss, a blur.

Three stride-2 stages take an S×S frame to about S/8; the decoder grows a ceil(S/8) grid
back by 8 and resizes to S when S is not a multiple of 8 (84 → 88 → 84), so any model
resolution works without per-size architectures.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

STAGES = 3


def conv_trunk(channels: int, width: int, batch_norm: bool) -> nn.Sequential:
    """Stride-2 conv stages (width, 2·width, 4·width); each stage is one Sequential block."""
    blocks = []
    c_in = channels
    for i in range(STAGES):
        c_out = width * 2**i
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm)]
        if batch_norm and i > 0:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        blocks.append(nn.Sequential(*layers))
        c_in = c_out
    return nn.Sequential(*blocks)


def trunk_output_size(trunk: nn.Module, channels: int, image_size: int) -> int:
    with torch.no_grad():
        return trunk(torch.zeros(1, channels, image_size, image_size)).numel()


class Decoder(nn.Module):
    """z → image logits of shape (N, out_channels, S, S)."""

    def __init__(self, latent_dim: int, out_channels: int, width: int, image_size: int):
        super().__init__()
        self.image_size = image_size
        self.grid = math.ceil(image_size / 2**STAGES)
        top = width * 2 ** (STAGES - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, top * self.grid * self.grid, bias=False),
            nn.BatchNorm1d(top * self.grid * self.grid),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        c_in = top
        for i in reversed(range(STAGES - 1)):
            c_out = width * 2**i
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
            c_in = c_out
        layers.append(nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1))
        self.up = nn.Sequential(*layers)
        self.top = top

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.top, self.grid, self.grid)
        out = self.up(h)
        if out.shape[-1] != self.image_size:
            out = F.interpolate(
                out, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return out


class GaussianEncoder(nn.Module):
    """x → (μ, log σ²) of q(z|x)."""

    def __init__(self, channels: int, width: int, image_size: int, latent_dim: int):
        super().__init__()
        self.trunk = conv_trunk(channels, width, batch_norm=True)
        flat = trunk_output_size(self.trunk, channels, image_size)
        self.head = nn.Linear(flat, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.trunk(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)


class Discriminator(nn.Module):
    """x → real/fake logit. ``trunk[i]`` are the layers Grad-CAM and L_feat can look at.

    No BatchNorm: a frame's logit (and so its attention map) must not depend on the
    other frames of its batch, in training or scoring.
    """

    def __init__(self, channels: int, width: int, image_size: int):
        super().__init__()
        self.trunk = conv_trunk(channels, width, batch_norm=False)
        flat = trunk_output_size(self.trunk, channels, image_size)
        self.head = nn.Linear(flat, 1)

    def features(self, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Activations after trunk block ``layer`` (Larsen's Dis_l)."""
        stop = layer % len(self.trunk)
        for i, block in enumerate(self.trunk):
            x = block(x)
            if i == stop:
                return x
        raise AssertionError("unreachable")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x).flatten(1)).squeeze(1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """z = μ + ε·σ; ε fresh from N(0, I) unless given (it broadcasts against μ)."""
    return mu + (torch.randn_like(mu) if noise is None else noise) * torch.exp(0.5 * logvar)


def fixed_normal(rows: int, dim: int, device: torch.device) -> torch.Tensor:
    """The same (rows, dim) draws from N(0, I) on every call and device. Scoring methods that
    sample use them, shared by all frames of a batch, so that a frame's score does not depend
    on the run, the device or which frames it was batched with."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    return torch.randn(rows, dim, generator=generator).to(device)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) ‖ N(0, I)) per sample."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of a discriminator's logits against "real" or "generated"."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (N, C, H, W) with edge padding."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(x.shape[1], 1, 1, 1)
    channels = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.mT, groups=channels)
