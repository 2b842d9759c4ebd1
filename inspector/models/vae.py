"""VAE scored by reconstruction probability (An & Cho 2015).

p(x|z) is a Gaussian with per-pixel mean and variance from the decoder. The score of a
frame is minus its reconstruction probability: −(1/L) Σ_l log p(x | μ(z_l), σ²(z_l)),
z_l ~ q(z|x). The L draws of ε (z_l = μ + ε_l·σ) are fixed, so that scores repeat.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch
from torch import optim

from inspector.models.base import AnomalyModel, ModelConfig, Scores, absolute_error
from inspector.models.blocks import (
    Decoder,
    GaussianEncoder,
    fixed_normal,
    kl_to_standard_normal,
    reparameterise,
)


class VAE(AnomalyModel):
    scoring_methods = ("vae",)

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.encoder = GaussianEncoder(c.channels, c.width, c.image_size, c.latent_dim)
        self.decoder = Decoder(c.latent_dim, 2 * c.channels, c.width, c.image_size)

    @cached_property
    def optimizer(self) -> optim.Adam:
        """Made on first use, by training (scoring needs no optimiser, nor its imports)."""
        return optim.Adam(self.parameters(), lr=self.config.lr)

    def likelihood(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean in [0, 1] and log-variance of p(x|z)."""
        mean_logit, logvar = self.decoder(z).chunk(2, dim=1)
        return torch.sigmoid(mean_logit), logvar.clamp(-8.0, 4.0)

    @staticmethod
    def log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """log N(x; mean, exp(logvar)) summed over pixels: (N,)."""
        nll = 0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) / logvar.exp())
        return -nll.flatten(1).sum(dim=1)

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        mean, var = self.likelihood(reparameterise(mu, logvar))
        return -self.log_likelihood(x, mean, var), kl_to_standard_normal(mu, logvar)

    def training_step(self, x: torch.Tensor) -> dict[str, float]:
        nll, kl = self.elbo_terms(x)
        loss = (nll + self.config.kl_weight * kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"nll": nll.mean().item(), "kl": kl.mean().item()}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        nll, kl = self.elbo_terms(x)
        return (nll + self.config.kl_weight * kl).mean().item()

    @torch.no_grad()
    def score(self, x: torch.Tensor, method: str = "vae") -> Scores:
        mu, logvar = self.encoder(x)
        log_p = torch.zeros(x.shape[0], device=x.device)
        reconstruction = torch.zeros_like(x)
        samples = self.config.vae_samples
        for noise in fixed_normal(samples, self.config.latent_dim, x.device):
            mean, var = self.likelihood(reparameterise(mu, logvar, noise))
            log_p += self.log_likelihood(x, mean, var) / samples
            reconstruction += mean / samples
        return Scores(score=-log_p, reconstruction=reconstruction, error=absolute_error(x, reconstruction))
