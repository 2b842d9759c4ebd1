"""AnoGAN (Schlegl et al. 2017): a DCGAN of normal frames, and a latent search at test time;
a baseline of the paper.

Trained as a DCGAN (non-saturating). For a query x, z is found by gradient steps on
    L(z) = (1 − λ) · Σ|x − G(z)|  +  λ · Σ|f(x) − f(G(z))|
(residual loss + discrimination loss, f = an intermediate discriminator layer, λ = 0.1).
The anomaly score is L at the last step; the map is the residual image |x − G(z)|.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import optim

from inspector.models.base import AnomalyModel, Family, ModelConfig, Scores, absolute_error
from inspector.models.blocks import Decoder, Discriminator, fixed_normal, gan_loss


@dataclass
class AnoGANConfig(ModelConfig):
    search_steps: int = 100  # gradient steps of the latent search, per frame scored
    search_lambda: float = 0.1  # λ: weight of the discrimination loss in L(z)
    search_lr: float = 0.05  # Adam's step size for z


class AnoGAN(AnomalyModel):
    scoring_methods = ("anogan",)
    config: AnoGANConfig

    def __init__(self, config: AnoGANConfig):
        super().__init__(config)
        c = config
        self.generator = Decoder(c.latent_dim, c.channels, c.width, c.image_size)
        self.discriminator = Discriminator(c.channels, c.width, c.image_size)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(z))

    def search_loss(self, x: torch.Tensor, z: torch.Tensor, x_features: torch.Tensor) -> torch.Tensor:
        """L(z) per frame, (1 − λ)·residual + λ·discrimination: (N,)."""
        fake = self.generate(z)
        residual = (x - fake).abs().flatten(1).sum(dim=1)
        discrimination = (x_features - self.discriminator.features(fake)).abs().flatten(1).sum(dim=1)
        lam = self.config.search_lambda
        return (1 - lam) * residual + lam * discrimination

    def score(self, x: torch.Tensor, method: str = "anogan") -> Scores:
        self.check_method(method)
        # Every frame's search starts from the same z, so its score does not depend on its batch.
        start = fixed_normal(1, self.config.latent_dim, x.device)
        z = start.expand(x.shape[0], -1).clone().requires_grad_(True)
        opt = optim.Adam([z], lr=self.config.search_lr)
        with torch.no_grad():
            x_features = self.discriminator.features(x)
        with torch.enable_grad():
            for _ in range(self.config.search_steps):
                loss = self.search_loss(x, z, x_features)
                (z.grad,) = torch.autograd.grad(loss.sum(), z)  # only z moves, never the GAN
                opt.step()
        with torch.no_grad():
            loss = self.search_loss(x, z, x_features)
            reconstruction = self.generate(z)
        return Scores(score=loss, reconstruction=reconstruction, error=absolute_error(x, reconstruction))


class AnoGANTrainer:
    """Alternating DCGAN updates: D on real against generated frames, then G to fool D."""

    def __init__(self, model: AnoGAN):
        self.model = model
        lr = model.config.lr
        self.opt_g = optim.Adam(model.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = optim.Adam(model.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def step(self, x: torch.Tensor) -> dict[str, float]:
        model = self.model
        z = torch.randn(x.shape[0], model.config.latent_dim, device=x.device)
        fake = model.generate(z)
        loss_d = gan_loss(model.discriminator(x), True) + gan_loss(model.discriminator(fake.detach()), False)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        loss_g = gan_loss(model.discriminator(fake), True)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"d": loss_d.item(), "g": loss_g.item()}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        # A GAN has no likelihood; the mean discriminator confusion on held-out normals tells
        # how well the generator covers them.
        return gan_loss(self.model.discriminator(x), True).item()


FAMILY = Family("anogan", AnoGANConfig, AnoGAN, AnoGANTrainer)
