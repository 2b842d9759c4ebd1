"""VAE scored by reconstruction probability (An & Cho 2015); a baseline of the paper.

p(x|z) is a Gaussian with per-pixel mean and variance from the decoder. Trained on the
ELBO: the negative log-likelihood −log p(x|z), z ~ q(z|x), plus KL(q(z|x) ‖ N(0, I)).
The score of a frame is minus its reconstruction probability:
    −(1/L) Σ_l log p(x | μ(z_l), σ²(z_l)),   z_l ~ q(z|x)
The L draws of ε (z_l = μ + ε_l·σ) are fixed, so that scores repeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import optim

from inspector.models.base import AnomalyModel, Family, ModelConfig, Scores, absolute_error
from inspector.models.blocks import (
    Decoder,
    GaussianEncoder,
    fixed_normal,
    kl_to_standard_normal,
    reparameterise,
)


@dataclass
class VAEConfig(ModelConfig):
    kl_weight: float = 1.0  # weight of the KL term (1 = the ELBO)
    samples: int = 10  # L: draws of z per frame for the reconstruction probability


class VAE(AnomalyModel):
    scoring_methods = ("vae",)
    config: VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        self.encoder = GaussianEncoder(c.channels, c.width, c.image_size, c.latent_dim)
        self.decoder = Decoder(c.latent_dim, 2 * c.channels, c.width, c.image_size)

    def likelihood(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean in [0, 1] and log-variance of p(x|z)."""
        mean_logit, logvar = self.decoder(z).chunk(2, dim=1)
        return torch.sigmoid(mean_logit), logvar.clamp(-8.0, 4.0)

    @torch.no_grad()
    def score(self, x: torch.Tensor, method: str = "vae") -> Scores:
        self.check_method(method)
        mu, logvar = self.encoder(x)
        log_p = torch.zeros(x.shape[0], device=x.device)
        reconstruction = torch.zeros_like(x)
        samples = self.config.samples
        for noise in fixed_normal(samples, self.config.latent_dim, x.device):
            mean, var = self.likelihood(reparameterise(mu, logvar, noise))
            log_p += log_likelihood(x, mean, var) / samples
            reconstruction += mean / samples
        return Scores(score=-log_p, reconstruction=reconstruction, error=absolute_error(x, reconstruction))


def log_likelihood(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(logvar)) summed over pixels: (N,)."""
    nll = 0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) / logvar.exp())
    return -nll.flatten(1).sum(dim=1)


def elbo_terms(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: −log p(x|z) with one z ~ q(z|x), and KL(q(z|x) ‖ N(0, I))."""
    mu, logvar = model.encoder(x)
    mean, var = model.likelihood(reparameterise(mu, logvar))
    return -log_likelihood(x, mean, var), kl_to_standard_normal(mu, logvar)


class VAETrainer:
    """Adam on the (weighted) negative ELBO."""

    def __init__(self, model: VAE):
        self.model = model
        self.optimizer = optim.Adam(model.parameters(), lr=model.config.lr)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        nll, kl = elbo_terms(self.model, x)
        loss = (nll + self.model.config.kl_weight * kl).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"nll": nll.mean().item(), "kl": kl.mean().item()}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        nll, kl = elbo_terms(self.model, x)
        return (nll + self.model.config.kl_weight * kl).mean().item()


FAMILY = Family("vae", VAEConfig, VAE, VAETrainer)
