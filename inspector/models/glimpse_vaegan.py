"""VAEGAN on glimpses: the paper's model, but it sees the object at a canonical place and scale.

A frame x is first turned into a glimpse g = sample(x, θ(x)) (see ``glimpse.py``); the
VAEGAN of ``vaegan.py`` is trained and scores on g, so the comparison of g with its
reconstruction g̃ = dec(enc(g)) no longer has to cover every size and place of the object.
Maps go back to the frame through θ⁻¹.

Scores: ``vaegan+`` = mean of e = |g − g̃|. ``vaegan-attn+`` attends twice: the glimpse
says where the object is, and the pixel term looks only at the most anomalous part of it,
    ē = G_σ * e,   A = 1[ē ≥ q-th largest value of ē],   s_pix = Σ A·ē / Σ A
(q = ``attended_fraction`` of the glimpse's pixels), so a defect is not diluted by the
noise over the rest of the object. The feature term is Larsen's L_feat, the error where the
VAEGAN learnt to reconstruct, in the discriminator's layer l:
    s_feat = ‖Dis_l(g) − Dis_l(g̃)‖²
The two are on different scales, so each is standardised by its mean and std on held-out
normal frames (``fit_normal_statistics``, after training):
    score = (s_pix − μ_pix)/σ_pix + (s_feat − μ_feat)/σ_feat
The attention map is A, put back in the frame.
"""

from __future__ import annotations

import dataclasses

import torch

from inspector.models.base import ModelConfig, Scores, absolute_error
from inspector.models.glimpse import gaussian_blur, glimpse, locate, unglimpse
from inspector.models.vaegan import VAEGAN


class GlimpseVAEGAN(VAEGAN):
    scoring_methods = ("vaegan+", "vaegan-attn+")

    def __init__(self, config: ModelConfig):
        # It standardises its own signals (below), not per-pixel maps: a glimpse moves with the object.
        super().__init__(dataclasses.replace(config, image_size=config.glimpse_size, standardise=False))
        self.config = config
        # Mean and std of (s_pix, s_feat) on held-out normal frames: see fit_normal_statistics.
        self.register_buffer("signal_mean", torch.zeros(2))
        self.register_buffer("signal_std", torch.ones(2))

    def see(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The glimpse g (N, C, s, s) and its map θ to the frame."""
        c = self.config
        theta = locate(x, c.glimpse_blur, c.glimpse_threshold, c.glimpse_fill)
        return glimpse(x, theta, c.glimpse_size, c.glimpse_blur), theta

    def training_step(self, x: torch.Tensor) -> dict[str, float]:
        return super().training_step(self.see(x)[0])

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        return super().validation_loss(self.see(x)[0])

    @torch.no_grad()
    def _reconstructed(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The glimpse g, its map θ, its reconstruction g̃ and the error e = |g − g̃|."""
        g, theta = self.see(x)
        g_rec = self.reconstruct(g)
        return g, theta, g_rec, absolute_error(g, g_rec)

    def _attended(self, error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s_pix and the attention A of glimpse error maps (N, s, s)."""
        smooth = gaussian_blur(error[:, None], self.config.error_blur)[:, 0]
        k = max(1, round(self.config.attended_fraction * smooth[0].numel()))
        kth = smooth.flatten(1).topk(k, dim=1).values[:, -1]
        attention = (smooth >= kth[:, None, None]).to(smooth.dtype)
        return (attention * smooth).sum(dim=(1, 2)) / attention.sum(dim=(1, 2)), attention

    def _signals(
        self, g: torch.Tensor, g_rec: torch.Tensor, error: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_pix, s_feat) per frame (N, 2), and the attention A."""
        attended, attention = self._attended(error)
        return torch.stack([attended, self.feature_loss(g, g_rec)], dim=1), attention

    @torch.no_grad()
    def fit_normal_statistics(self, held_out: torch.Tensor, seen: torch.Tensor, batch: int = 64) -> None:
        signals = []
        for start in range(0, len(held_out), batch):
            g, _, g_rec, error = self._reconstructed(held_out[start : start + batch])
            signals.append(self._signals(g, g_rec, error)[0])
        stacked = torch.cat(signals)
        self.signal_mean.copy_(stacked.mean(dim=0))
        self.signal_std.copy_(stacked.std(dim=0, correction=0).clamp_min(1e-6))

    def score(self, x: torch.Tensor, method: str = "vaegan-attn+") -> Scores:
        if method not in self.scoring_methods:
            raise ValueError(f"this model scores with {self.scoring_methods}, not {method!r}")
        g, theta, g_rec, error = self._reconstructed(x)
        size = self.config.image_size
        reconstruction = unglimpse(g_rec, theta, size)
        frame_error = unglimpse(error[:, None], theta, size)[:, 0]
        if method == "vaegan+":
            return Scores(score=error.mean(dim=(1, 2)), reconstruction=reconstruction, error=frame_error)
        with torch.no_grad():
            signals, attention = self._signals(g, g_rec, error)
        return Scores(
            score=((signals - self.signal_mean) / self.signal_std).sum(dim=1),
            reconstruction=reconstruction,
            error=frame_error,
            attention=unglimpse(attention[:, None], theta, size)[:, 0],
        )
