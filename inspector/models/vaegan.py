"""VAEGAN (Larsen et al. 2016) and its two anomaly scores (Kimura et al.).

Objective, min over encoder/decoder, max over discriminator D:
    L = L_GAN + λ·L_prior + L_feat
    L_prior = KL(q(z|x) ‖ p(z))
    L_feat  = ‖Dis_l(x) − Dis_l(x̃)‖²   (reconstruction error in a discriminator layer)
    L_GAN   = log D(x) + log(1 − D(dec(z_p))) + log(1 − D(dec(enc(x)))),  z_p ~ p(z)
As in Larsen's algorithm, the encoder minimises λ·L_prior + L_feat, the decoder
γ·L_feat − L_GAN (non-saturating form), and D maximises L_GAN. An optional pixel-space
L1 term (``pixel_weight``) anchors the reconstructions that the naive score compares.

Scores: ``vaegan`` = mean of the error image |x − dec(enc(x))| (with z = μ);
``vaegan-attn`` = mean of the error image weighted by the discriminator's Grad-CAM.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import optim
from torch.nn import functional as F

from inspector.models.base import AnomalyModel, ModelConfig, Scores, absolute_error
from inspector.models.blocks import (
    Decoder,
    Discriminator,
    GaussianEncoder,
    kl_to_standard_normal,
    reparameterise,
)
from inspector.models.gradcam import discriminator_attention


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class VAEGAN(AnomalyModel):
    scoring_methods = ("vaegan", "vaegan-attn")

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.encoder = GaussianEncoder(c.channels, c.width, c.image_size, c.latent_dim)
        self.decoder = Decoder(c.latent_dim, c.channels, c.width, c.image_size)
        self.discriminator = Discriminator(c.channels, c.width, c.image_size)

    # Made on first use, by training: the first Adam of a process costs about a second of
    # imports, which scoring never needs.
    @cached_property
    def opt_enc(self) -> optim.Adam:
        return optim.Adam(self.encoder.parameters(), lr=self.config.lr, betas=(0.5, 0.999))

    @cached_property
    def opt_dec(self) -> optim.Adam:
        return optim.Adam(self.decoder.parameters(), lr=self.config.lr, betas=(0.5, 0.999))

    @cached_property
    def opt_dis(self) -> optim.Adam:
        return optim.Adam(self.discriminator.parameters(), lr=self.config.lr, betas=(0.5, 0.999))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """dec(enc(x)) with z = μ: the deterministic reconstruction used for scoring."""
        mu, _ = self.encoder(x)
        return self.decode(mu)

    def feature_loss(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        """L_feat per frame: squared error in discriminator layer l, summed."""
        layer = self.config.feature_layer
        target = self.discriminator.features(x, layer).detach()
        return (self.discriminator.features(x_rec, layer) - target).pow(2).flatten(1).sum(dim=1)

    def pixel_loss(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        return (x - x_rec).abs().flatten(1).sum(dim=1)

    def training_step(self, x: torch.Tensor) -> dict[str, float]:
        c = self.config
        mu, logvar = self.encoder(x)
        x_rec = self.decode(reparameterise(mu, logvar))
        x_prior = self.decode(torch.randn_like(mu))

        # Discriminator: maximise L_GAN (real vs reconstructions and prior samples).
        loss_dis = (
            _bce(self.discriminator(x), True)
            + _bce(self.discriminator(x_rec.detach()), False)
            + _bce(self.discriminator(x_prior.detach()), False)
        )
        self.opt_dis.zero_grad(set_to_none=True)
        loss_dis.backward()
        self.opt_dis.step()

        l_prior = kl_to_standard_normal(mu, logvar).mean()
        l_feat = self.feature_loss(x, x_rec).mean()
        l_pixel = self.pixel_loss(x, x_rec).mean()
        l_gan_dec = _bce(self.discriminator(x_rec), True) + _bce(self.discriminator(x_prior), True)
        loss_enc = c.kl_weight * l_prior + l_feat + c.pixel_weight * l_pixel
        loss_dec = c.feature_weight * l_feat + c.pixel_weight * l_pixel + c.gan_weight * l_gan_dec

        enc_params = list(self.encoder.parameters())
        dec_params = list(self.decoder.parameters())
        enc_grads = torch.autograd.grad(loss_enc, enc_params, retain_graph=True)
        dec_grads = torch.autograd.grad(loss_dec, dec_params)
        for params, grads, opt in (
            (enc_params, enc_grads, self.opt_enc),
            (dec_params, dec_grads, self.opt_dec),
        ):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
        return {
            "dis": loss_dis.item(),
            "prior": l_prior.item(),
            "feat": l_feat.item(),
            "pixel": l_pixel.item(),
            "gan": l_gan_dec.item(),
        }

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        return absolute_error(x, self.reconstruct(x)).mean().item()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Grad-CAM of the discriminator's real logit, (N, H, W) in [0, 1]."""
        layer = self.discriminator.trunk[self.config.attention_layer]
        return discriminator_attention(self.discriminator, layer, x)

    def score(self, x: torch.Tensor, method: str = "vaegan-attn") -> Scores:
        if method not in self.scoring_methods:
            raise ValueError(f"VAEGAN scores with {self.scoring_methods}, not {method!r}")
        with torch.no_grad():
            reconstruction = self.reconstruct(x)
            error = absolute_error(x, reconstruction)
        if method == "vaegan":
            return Scores(score=error.mean(dim=(1, 2)), reconstruction=reconstruction, error=error)
        attention = self.attention(x)
        weighted = error * attention
        return Scores(
            score=weighted.mean(dim=(1, 2)),
            reconstruction=reconstruction,
            error=error,
            attention=attention,
        )
