"""VAEGAN (Larsen et al. 2016) and its two anomaly scores (Kimura et al.).

Objective, min over encoder/decoder, max over discriminator D:
    L = L_GAN + λ·L_prior + L_feat
    L_prior = KL(q(z|x) ‖ p(z))
    L_feat  = ‖Dis_l(x) − Dis_l(x̃)‖²   (reconstruction error in a discriminator layer)
    L_GAN   = log D(x) + log(1 − D(dec(z_p))) + log(1 − D(dec(enc(x)))),  z_p ~ p(z)
As in Larsen's algorithm, the encoder minimises λ·L_prior + L_feat, the decoder
γ·L_feat − L_GAN (non-saturating form), and D maximises L_GAN. An optional pixel-space
L1 term (``pixel_weight``) anchors the reconstructions that the naive score compares.

Scores: ``vaegan`` = mean of the error image e = |x − dec(enc(x))| (with z = μ);
``vaegan-attn`` = mean of the error image weighted by the discriminator's Grad-CAM A, e·A.
With ``standardise`` (a fixed camera) both maps are first measured against the normal
training frames, pixel by pixel (standardise.py): e becomes z_e, and the attention counts where the
discriminator looks *more than it does on normal frames*, z_A. The maps are z_e and
z_e + z_A (z_A at most ``attention_cap``), and a frame scores their peak: a defect is
local. With ``region_blur`` z_e is the larger of the z of the finely and of the coarsely
smoothed error, for large faint defects; with ``neighbours`` the error's μ and σ come from
the k training frames nearest in latent space (normal frames of several kinds).
"""

from __future__ import annotations

from collections.abc import Iterator
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
from inspector.models.standardise import NeighbourStatistics, PixelStatistics, evenly_spaced


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
        if c.attention_cap < 0:
            raise ValueError(f"attention_cap is a number of σ (0 = no cap), not {c.attention_cap}")
        if c.standardise:
            self.error_statistics = self._error_statistics(c.error_blur)
            self.attention_statistics = PixelStatistics(c.image_size, c.error_blur)
            if c.region_blur:
                self.region_statistics = self._error_statistics(c.region_blur)

    def _error_statistics(self, blur: float) -> PixelStatistics | NeighbourStatistics:
        size, k = self.config.image_size, self.config.neighbours
        return NeighbourStatistics(size, blur, k) if k else PixelStatistics(size, blur)

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

    @torch.no_grad()
    def fit_normal_statistics(self, held_out: torch.Tensor, seen: torch.Tensor, batch: int = 64) -> None:
        """Per-pixel statistics of the maps from the training frames: a frame's peak z finds
        the pixels whose spread was underestimated, so they need many frames (on the magnetic
        tiles, 571 training frames gave image AUROC 0.81 where 63 held-out ones gave 0.78).
        The held-out frames stay unbiased for the threshold."""
        if not self.config.standardise:
            return
        device = next(self.parameters()).device

        def batches(frames: torch.Tensor) -> Iterator[torch.Tensor]:
            return (frames[start : start + batch].to(device) for start in range(0, len(frames), batch))

        def errors(frames: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # (code, error)
            for x in batches(frames):
                mu, _ = self.encoder(x)
                yield mu, absolute_error(x, self.decode(mu))

        for statistics in self._error_scales():
            if isinstance(statistics, NeighbourStatistics):
                statistics.fit(errors(seen[evenly_spaced(len(seen), statistics.MAX_REFERENCES)]))
            else:
                statistics.fit(error for _, error in errors(seen))
        self.attention_statistics.fit(self.attention(x) for x in batches(seen))

    def _error_scales(self) -> list[PixelStatistics | NeighbourStatistics]:
        return [self.error_statistics] + ([self.region_statistics] if self.config.region_blur else [])

    def _standardised_error(self, error: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """z of the error; with region_blur, the larger of the fine and the coarse one, so a faint
        defect spread over a region counts as well as a sharp one. ``code`` (the latent mean)
        picks the reference frames of NeighbourStatistics."""
        return torch.stack([statistics(error, code) for statistics in self._error_scales()]).amax(dim=0)

    def _attention_z(self, attention: torch.Tensor) -> torch.Tensor:
        """z of the attention, capped at ``attention_cap``: on the magnetic tiles an uncapped z_A
        took image AUROC from 0.94 (error alone) to 0.84 in one of two trainings, where
        attention spikes on normal frames made the peaks; capped at 2 it gave 0.93-0.94 in both."""
        z = self.attention_statistics(attention)
        return z.clamp_max(self.config.attention_cap) if self.config.attention_cap else z

    def score(self, x: torch.Tensor, method: str = "vaegan-attn") -> Scores:
        if method not in self.scoring_methods:
            raise ValueError(f"VAEGAN scores with {self.scoring_methods}, not {method!r}")
        with torch.no_grad():
            code, _ = self.encoder(x)
            reconstruction = self.decode(code)
            error = absolute_error(x, reconstruction)
        attention = self.attention(x) if method == "vaegan-attn" else None
        if self.config.standardise:
            error = self._standardised_error(error, code)
            anomaly_map = error if attention is None else error + self._attention_z(attention)
            score = anomaly_map.flatten(1).amax(dim=1)
        else:
            anomaly_map = error if attention is None else error * attention
            score = anomaly_map.mean(dim=(1, 2))
        return Scores(
            score=score,
            reconstruction=reconstruction,
            error=error,
            attention=attention,
            anomaly_map=anomaly_map,
        )
