"""VAEGAN on glimpses (ours): the paper's model, but it sees the object at a canonical place and scale.

A frame x is first turned into a glimpse g = sample(x, θ(x)) (see ``glimpse.py``); the
VAEGAN of ``vaegan.py`` is trained and scores on g, so the comparison of g with its
reconstruction g̃ = dec(enc(g)) no longer has to cover every size and place of the object.
Maps go back to the frame through θ⁻¹.

Scores: ``vaegan+`` = mean of e = |g − g̃|. ``vaegan-attn+`` attends twice: the glimpse
says where the object is, and the pixel term looks only at the most anomalous part of it,
its top-fraction mask M:
    ē = G_σ * e,   M = 1[ē ≥ q-th largest value of ē],   s_pix = Σ M·ē / Σ M
(q = ``attended_fraction`` of the glimpse's pixels), so a defect is not diluted by the
noise over the rest of the object. The feature term is Larsen's L_feat, the error where the
VAEGAN learnt to reconstruct, in the discriminator's layer l:
    s_feat = ‖Dis_l(g) − Dis_l(g̃)‖²
The two are on different scales, so each is standardised by its mean and std on held-out
normal frames (``fit_normal_statistics``, after training):
    score = (s_pix − μ_pix)/σ_pix + (s_feat − μ_feat)/σ_feat
The method's attention map is M, put back in the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from inspector.models.base import Family, Scores, absolute_error
from inspector.models.blocks import gaussian_blur
from inspector.models.glimpse import GlimpseFields, glimpse, locate_with, unglimpse
from inspector.models.vaegan import VAEGAN, VAEGANConfig, VAEGANTrainer, feature_loss


@dataclass
class GlimpseConfig(GlimpseFields, VAEGANConfig):
    error_blur: float = 1.0  # σ (pixels) of the error's smoothing for vaegan-attn+
    attended_fraction: float = 0.05  # vaegan-attn+ scores the mean of this top fraction of it
    UNVERSIONED: ClassVar[dict[str, Any]] = {**VAEGANConfig.UNVERSIONED, "glimpse_polarity": 1.0}


class Glimpsed(NamedTuple):
    """A batch seen through its glimpses."""

    glimpse: torch.Tensor  # g (N, C, s, s)
    theta: torch.Tensor  # θ (N, 2, 3): glimpse → frame
    reconstruction: torch.Tensor  # g̃
    error: torch.Tensor  # e = |g − g̃| (N, s, s)


def top_fraction_error(
    error: torch.Tensor, blur: float, fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """s_pix (N,) and the top-fraction mask M (N, s, s) of error maps (N, s, s)."""
    smooth = gaussian_blur(error[:, None], blur)[:, 0]
    k = max(1, round(fraction * smooth[0].numel()))
    kth = smooth.flatten(1).topk(k, dim=1).values[:, -1]
    mask = (smooth >= kth[:, None, None]).to(smooth.dtype)
    return (mask * smooth).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)), mask


class GlimpseVAEGAN(VAEGAN):
    scoring_methods = ("vaegan+", "vaegan-attn+")
    config: GlimpseConfig

    def __init__(self, config: GlimpseConfig):
        super().__init__(config, input_size=config.glimpse_size)
        # Mean and std of (s_pix, s_feat) on held-out normal frames: see fit_normal_statistics.
        self.register_buffer("signal_mean", torch.zeros(2))
        self.register_buffer("signal_std", torch.ones(2))

    def see(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The glimpse g (N, C, s, s) and its map θ to the frame."""
        c = self.config
        theta = locate_with(x, c)
        return glimpse(x, theta, c.glimpse_size, c.glimpse_blur), theta

    @torch.no_grad()
    def glimpsed(self, x: torch.Tensor) -> Glimpsed:
        g, theta = self.see(x)
        g_rec = self.reconstruct(g)
        return Glimpsed(g, theta, g_rec, absolute_error(g, g_rec))

    def _signals(self, seen: Glimpsed) -> tuple[torch.Tensor, torch.Tensor]:
        """(s_pix, s_feat) per frame (N, 2), and the mask M."""
        c = self.config
        attended, mask = top_fraction_error(seen.error, c.error_blur, c.attended_fraction)
        return torch.stack([attended, feature_loss(self, seen.glimpse, seen.reconstruction)], dim=1), mask

    @torch.no_grad()
    def fit_normal_statistics(
        self,
        held_out: torch.Tensor,
        seen: torch.Tensor,
        remember: torch.Tensor | None = None,
        batch: int = 64,
    ) -> None:
        signals = [
            self._signals(self.glimpsed(held_out[i : i + batch]))[0] for i in range(0, len(held_out), batch)
        ]
        stacked = torch.cat(signals)
        self.signal_mean.copy_(stacked.mean(dim=0))
        self.signal_std.copy_(stacked.std(dim=0, correction=0).clamp_min(1e-6))

    def score(self, x: torch.Tensor, method: str = "vaegan-attn+") -> Scores:
        self.check_method(method)
        seen = self.glimpsed(x)
        size = self.config.image_size
        reconstruction = unglimpse(seen.reconstruction, seen.theta, size)
        frame_error = unglimpse(seen.error[:, None], seen.theta, size)[:, 0]
        if method == "vaegan+":
            return Scores(score=seen.error.mean(dim=(1, 2)), reconstruction=reconstruction, error=frame_error)
        with torch.no_grad():
            signals, mask = self._signals(seen)
        return Scores(
            score=((signals - self.signal_mean) / self.signal_std).sum(dim=1),
            reconstruction=reconstruction,
            error=frame_error,
            attention=unglimpse(mask[:, None], seen.theta, size)[:, 0],
        )


class GlimpseTrainer(VAEGANTrainer):
    """Larsen's updates, on the glimpses of the frames."""

    model: GlimpseVAEGAN

    def step(self, x: torch.Tensor) -> dict[str, float]:
        return super().step(self.model.see(x)[0])

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        return super().validation_loss(self.model.see(x)[0])


FAMILY = Family("vaegan+", GlimpseConfig, GlimpseVAEGAN, GlimpseTrainer)
