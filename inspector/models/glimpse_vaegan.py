"""VAEGAN on glimpses: the paper's model, but it sees the object at a canonical place and scale.

A frame x is first turned into a glimpse g = sample(x, θ(x)) (see ``glimpse.py``); the
VAEGAN of ``vaegan.py`` is trained and scores on g, so the comparison of g with its
reconstruction g̃ = dec(enc(g)) no longer has to cover every size and place of the object.
Maps go back to the frame through θ⁻¹.

Scores: ``vaegan+`` = mean of e = |g − g̃|. ``vaegan-attn+`` attends twice: the glimpse
says where the object is, and the score looks only at the most anomalous part of it,
    ē = G_σ * e,   A = 1[ē ≥ q-th largest value of ē],   score = Σ A·ē / Σ A
(q = ``attended_fraction`` of the glimpse's pixels), so a defect is not diluted by the
noise over the rest of the object. The attention map is A, put back in the frame.
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
        super().__init__(dataclasses.replace(config, image_size=config.glimpse_size))
        self.config = config

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

    def score(self, x: torch.Tensor, method: str = "vaegan-attn+") -> Scores:
        if method not in self.scoring_methods:
            raise ValueError(f"this model scores with {self.scoring_methods}, not {method!r}")
        g, theta = self.see(x)
        size = self.config.image_size
        with torch.no_grad():
            g_rec = self.reconstruct(g)
            error = absolute_error(g, g_rec)
        reconstruction = unglimpse(g_rec, theta, size)
        frame_error = unglimpse(error[:, None], theta, size)[:, 0]
        if method == "vaegan+":
            return Scores(score=error.mean(dim=(1, 2)), reconstruction=reconstruction, error=frame_error)
        smooth = gaussian_blur(error[:, None], self.config.error_blur)[:, 0]
        k = max(1, round(self.config.attended_fraction * smooth[0].numel()))
        kth = smooth.flatten(1).topk(k, dim=1).values[:, -1]
        attention = (smooth >= kth[:, None, None]).to(smooth.dtype)
        return Scores(
            score=(attention * smooth).sum(dim=(1, 2)) / attention.sum(dim=(1, 2)),
            reconstruction=reconstruction,
            error=frame_error,
            attention=unglimpse(attention[:, None], theta, size)[:, 0],
        )
