"""AnoGAN (Schlegl et al. 2017): a DCGAN of normal frames, and a latent search at test time.

For a query x, z is found by gradient steps on
    L(z) = (1 − λ) · Σ|x − G(z)|  +  λ · Σ|f(x) − f(G(z))|
(residual loss + discrimination loss, f = an intermediate discriminator layer, λ = 0.1).
The anomaly score is L at the last step; the map is the residual image |x − G(z)|.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import optim
from torch.nn import functional as F

from inspector.models.base import AnomalyModel, ModelConfig, Scores, absolute_error
from inspector.models.blocks import Decoder, Discriminator, fixed_normal


class AnoGAN(AnomalyModel):
    scoring_methods = ("anogan",)

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.generator = Decoder(c.latent_dim, c.channels, c.width, c.image_size)
        self.discriminator = Discriminator(c.channels, c.width, c.image_size)

    # Made on first use, by training: scoring needs no optimisers.
    @cached_property
    def opt_g(self) -> optim.Adam:
        return optim.Adam(self.generator.parameters(), lr=self.config.lr, betas=(0.5, 0.999))

    @cached_property
    def opt_d(self) -> optim.Adam:
        return optim.Adam(self.discriminator.parameters(), lr=self.config.lr, betas=(0.5, 0.999))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(z))

    def training_step(self, x: torch.Tensor) -> dict[str, float]:
        z = torch.randn(x.shape[0], self.config.latent_dim, device=x.device)
        fake = self.generate(z)
        d_real, d_fake = self.discriminator(x), self.discriminator(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(
            d_real, torch.ones_like(d_real)
        ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        d_gen = self.discriminator(fake)
        loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"d": loss_d.item(), "g": loss_g.item()}

    def search_loss(self, x: torch.Tensor, z: torch.Tensor, x_features: torch.Tensor) -> torch.Tensor:
        """Per-frame (1 − λ)·residual + λ·discrimination loss: (N,)."""
        fake = self.generate(z)
        residual = (x - fake).abs().flatten(1).sum(dim=1)
        discrimination = (x_features - self.discriminator.features(fake)).abs().flatten(1).sum(dim=1)
        lam = self.config.anogan_lambda
        return (1 - lam) * residual + lam * discrimination

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        # A GAN has no likelihood; the mean discriminator confusion on held-out normals tells
        # how well the generator covers them.
        d_real = self.discriminator(x)
        return F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)).item()

    def score(self, x: torch.Tensor, method: str = "anogan") -> Scores:
        # Every frame's search starts from the same z, so its score does not depend on its batch.
        start = fixed_normal(1, self.config.latent_dim, x.device)
        z = start.expand(x.shape[0], -1).clone().requires_grad_(True)
        opt = optim.Adam([z], lr=self.config.anogan_lr)
        with torch.no_grad():
            x_features = self.discriminator.features(x)
        with torch.enable_grad():
            for _ in range(self.config.anogan_steps):
                loss = self.search_loss(x, z, x_features)
                (z.grad,) = torch.autograd.grad(loss.sum(), z)  # only z moves, never the GAN
                opt.step()
        with torch.no_grad():
            loss = self.search_loss(x, z, x_features)
            reconstruction = self.generate(z)
        return Scores(score=loss, reconstruction=reconstruction, error=absolute_error(x, reconstruction))
