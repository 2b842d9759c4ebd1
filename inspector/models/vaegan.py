"""VAEGAN (Larsen et al. 2016) and its two anomaly scores (Kimura et al.): the paper's method.

Objective, min over encoder/decoder, max over discriminator D:
    L = L_GAN + λ·L_prior + L_feat
    L_prior = KL(q(z|x) ‖ p(z))
    L_feat  = ‖Dis_l(x) − Dis_l(x̃)‖²   (reconstruction error in a discriminator layer)
    L_GAN   = log D(x) + log(1 − D(dec(z_p))) + log(1 − D(dec(enc(x)))),  z_p ~ p(z)
As in Larsen's algorithm, the encoder minimises λ·L_prior + L_feat, the decoder
γ·L_feat − L_GAN (non-saturating form), and D maximises L_GAN. An optional pixel-space
L1 term (``pixel_weight``) anchors the reconstructions that the naive score compares.

Scores, with x̃ = dec(enc(x)) taking z = μ:
    vaegan       mean of the error image e = |x − x̃|
    vaegan-attn  mean of e·A, A = the discriminator's Grad-CAM map of its "real" logit
                 (gradcam.py), normalised to a peak of 1 per frame
Variants of ours are families of their own: fixed_camera.py, glimpse_vaegan.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import optim

from inspector.models.base import AnomalyModel, Family, ModelConfig, Scores, absolute_error
from inspector.models.blocks import (
    Decoder,
    Discriminator,
    GaussianEncoder,
    gan_loss,
    kl_to_standard_normal,
    reparameterise,
)
from inspector.models.gradcam import discriminator_attention


@dataclass
class VAEGANConfig(ModelConfig):
    kl_weight: float = 1.0  # λ: weight of L_prior
    pixel_weight: float = 1.0  # weight of the pixel-space L1 term (0 = Larsen's feature loss only)
    feature_weight: float = 1.0  # γ: weight of L_feat for the decoder
    gan_weight: float = 1.0  # weight of the decoder's GAN term
    feature_layer: int = -1  # discriminator block l of L_feat
    attention_layer: int = -1  # discriminator block Grad-CAM looks at


class VAEGAN(AnomalyModel):
    scoring_methods = ("vaegan", "vaegan-attn")
    config: VAEGANConfig

    def __init__(self, config: VAEGANConfig, input_size: int | None = None):
        """``input_size``: the side of what the networks see (the frame's, unless a variant shows
        them something else)."""
        super().__init__(config)
        c, size = config, input_size or config.image_size
        self.encoder = GaussianEncoder(c.channels, c.width, size, c.latent_dim)
        self.decoder = Decoder(c.latent_dim, c.channels, c.width, size)
        self.discriminator = Discriminator(c.channels, c.width, size)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """dec(enc(x)) with z = μ: the deterministic reconstruction used for scoring."""
        mu, _ = self.encoder(x)
        return self.decode(mu)

    def grad_cam(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's Grad-CAM map of its real logit, (N, H, W) in [0, 1]."""
        layer = self.discriminator.trunk[self.config.attention_layer]
        return discriminator_attention(self.discriminator, layer, x)

    def score(self, x: torch.Tensor, method: str = "vaegan-attn") -> Scores:
        self.check_method(method)
        with torch.no_grad():
            reconstruction = self.reconstruct(x)
            error = absolute_error(x, reconstruction)
        if method == "vaegan":
            return Scores(score=error.mean(dim=(1, 2)), reconstruction=reconstruction, error=error)
        attention = self.grad_cam(x)
        weighted = error * attention
        return Scores(
            score=weighted.mean(dim=(1, 2)),
            reconstruction=reconstruction,
            error=error,
            attention=attention,
            anomaly_map=weighted,
        )


# --- the loss terms, per frame ---------------------------------------------------------------


def feature_loss(model: VAEGAN, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """L_feat: squared error in discriminator layer l, summed over it."""
    layer = model.config.feature_layer
    target = model.discriminator.features(x, layer).detach()
    return (model.discriminator.features(x_rec, layer) - target).pow(2).flatten(1).sum(dim=1)


def pixel_loss(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """The pixel-space L1 term: Σ|x − x̃|."""
    return (x - x_rec).abs().flatten(1).sum(dim=1)


class VAEGANTrainer:
    """Larsen's updates: D on L_GAN, then the encoder and the decoder each on its own loss,
    with its own Adam (β₁ = 0.5, as for DCGANs)."""

    def __init__(self, model: VAEGAN):
        self.model = model
        lr, betas = model.config.lr, (0.5, 0.999)
        self.opt_enc = optim.Adam(model.encoder.parameters(), lr=lr, betas=betas)
        self.opt_dec = optim.Adam(model.decoder.parameters(), lr=lr, betas=betas)
        self.opt_dis = optim.Adam(model.discriminator.parameters(), lr=lr, betas=betas)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        model, c = self.model, self.model.config
        dis = model.discriminator
        mu, logvar = model.encoder(x)
        x_rec = model.decode(reparameterise(mu, logvar))
        x_prior = model.decode(torch.randn_like(mu))

        # Discriminator: maximise L_GAN (real vs reconstructions and prior samples).
        loss_dis = (
            gan_loss(dis(x), True)
            + gan_loss(dis(x_rec.detach()), False)
            + gan_loss(dis(x_prior.detach()), False)
        )
        self.opt_dis.zero_grad(set_to_none=True)
        loss_dis.backward()
        self.opt_dis.step()

        l_prior = kl_to_standard_normal(mu, logvar).mean()
        l_feat = feature_loss(model, x, x_rec).mean()
        l_pixel = pixel_loss(x, x_rec).mean()
        l_gan_dec = gan_loss(dis(x_rec), True) + gan_loss(dis(x_prior), True)
        loss_enc = c.kl_weight * l_prior + l_feat + c.pixel_weight * l_pixel
        loss_dec = c.feature_weight * l_feat + c.pixel_weight * l_pixel + c.gan_weight * l_gan_dec

        enc_params = list(model.encoder.parameters())
        dec_params = list(model.decoder.parameters())
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
        """The scoring error |x − x̃| of held-out normals (GAN losses wander)."""
        return absolute_error(x, self.model.reconstruct(x)).mean().item()


FAMILY = Family("vaegan", VAEGANConfig, VAEGAN, VAEGANTrainer)
