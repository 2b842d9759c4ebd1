"""What every method shares: its hyper-parameters, its per-frame output and its interface."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelConfig:
    """Hyper-parameters of a method; stored whole in the checkpoint."""

    family: str = "vaegan"  # vae | anogan | vaegan | vaegan+ (each scores its own checkpoint)
    image_size: int = 84
    channels: int = 1
    latent_dim: int = 64
    width: int = 32
    lr: float = 2e-4
    batch_size: int = 64
    # VAE / VAEGAN prior weight λ (L_prior) and reconstruction terms
    kl_weight: float = 1.0
    pixel_weight: float = 1.0  # weight of the pixel-space L1 term (0 = Larsen's feature loss only)
    feature_weight: float = 1.0  # γ: weight of L_feat = ‖Dis_l(x) − Dis_l(x̃)‖² for the decoder
    gan_weight: float = 1.0  # weight of the decoder's GAN term
    feature_layer: int = -1  # discriminator block for L_feat
    attention_layer: int = -1  # discriminator block for Grad-CAM
    # vaegan: measure the error and attention maps against the normal training frames, pixel
    # by pixel, and score a frame by the peak (see standardise.py). For a fixed camera.
    standardise: bool = False
    region_blur: float = 0.0  # with standardise: the error smoothed this much (pixels) too: large defects
    # with standardise: the error's μ and σ from the k training frames nearest in latent space
    # (0 = from all of them): for normal frames of several kinds (standardise.py)
    neighbours: int = 0
    # with standardise: the attention's z adds at most this much to the error's z (0 = no cap),
    # so attention weighs where an error counts but cannot make a peak of its own (vaegan.py)
    attention_cap: float = 0.0
    # vaegan+: the glimpse (object found, cropped and resampled to a square; see glimpse.py)
    glimpse_size: int = 28
    glimpse_blur: float = 1.0  # σ of the smoothing used to find the object and to resample it
    glimpse_threshold: float = 0.25  # object = smoothed frame above its median by this much
    glimpse_fill: float = 20 / 28  # fraction of the glimpse side the object spans
    error_blur: float = 1.0  # σ (pixels) of the smoothing of the maps for vaegan-attn+ and standardise
    attended_fraction: float = 0.05  # vaegan-attn+ scores the mean of this top fraction of it
    # VAE reconstruction probability (An & Cho): number of z samples L
    vae_samples: int = 10
    # AnoGAN latent search (Schlegl et al.)
    anogan_steps: int = 100
    anogan_lambda: float = 0.1
    anogan_lr: float = 0.05


@dataclass
class Scores:
    """Per-frame output of a scoring method, batched on the first dimension."""

    score: torch.Tensor  # (N,)
    reconstruction: torch.Tensor  # (N, C, H, W)
    error: torch.Tensor  # (N, H, W): |x − x̃|, or its z where the method standardises its maps
    attention: torch.Tensor | None = None  # (N, H, W) in [0, 1], where the method has one
    anomaly_map: torch.Tensor | None = None  # (N, H, W): what the score sums up; None = the error

    def __post_init__(self) -> None:
        if self.anomaly_map is None:
            self.anomaly_map = self.error


class AnomalyModel(nn.Module):
    """A method trained on normal frames only, able to score new ones."""

    scoring_methods: tuple[str, ...] = ()  # the methods this family scores with, the recommended last

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    def training_step(self, x: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch of normal frames; returns the loss terms."""
        raise NotImplementedError

    def validation_loss(self, x: torch.Tensor) -> float:
        """A loss on held-out normal frames for early stopping (lower is better)."""
        raise NotImplementedError

    def score(self, x: torch.Tensor, method: str) -> Scores:
        """Anomaly scores (higher = more anomalous) and maps; call in eval mode."""
        raise NotImplementedError

    def fit_normal_statistics(self, held_out: torch.Tensor, seen: torch.Tensor) -> None:
        """After training: learn from normal frames what scoring needs besides the weights (kept
        in buffers, so saved with them). ``held_out`` were not trained on, ``seen`` were; the
        held-out ones also set the default threshold. Most methods need nothing."""


def absolute_error(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The error image |x − x̃|, averaged over channels: (N, H, W)."""
    return (x - reconstruction).abs().mean(dim=1)
