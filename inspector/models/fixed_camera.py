"""The VAEGAN for a fixed camera (ours): its maps measured against normal frames, pixel by pixel.

The paper's VAEGAN (vaegan.py), trained the same way; only the scores differ. A fixed
camera sees every part at the same place, so each pixel has its own normal range (a tile's
edge always reconstructs worse than its face): after training, the error e = |x − x̃| and
the discriminator's Grad-CAM map A are measured against the normal training frames
(standardise.py), and a frame scores the peak of its map, as a defect is local:
    vaegan-z       peak of z_e
    vaegan-attn-z  peak of z_e + min(z_A, attention_cap)
z_e counts how far above normal each pixel's error is, in units of that pixel's normal
spread; z_A where the discriminator looks *more than it does on normal frames*, capped so
that it weighs where an error counts but cannot make a peak of its own (``attention_cap``,
0 = no cap). With ``region_blur`` z_e is the larger of the z of the finely and of the
coarsely smoothed error, for large faint defects; with ``neighbours`` the error's μ and σ
come from the k training frames nearest in latent space (normal frames of several kinds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from inspector.models.base import Family, Scores, absolute_error
from inspector.models.standardise import NeighbourStatistics, PixelStatistics, evenly_spaced
from inspector.models.vaegan import VAEGAN, VAEGANConfig, VAEGANTrainer


@dataclass
class FixedCameraConfig(VAEGANConfig):
    error_blur: float = 1.0  # σ (pixels) of the smoothing of both maps before they are measured
    region_blur: float = 0.0  # the error smoothed this much (pixels) too, for large defects (0 = not)
    neighbours: int = 0  # the error's μ and σ from the k nearest training frames (0 = from all)
    attention_cap: float = 0.0  # the most z_A adds to z_e, in σ (0 = no cap)


class FixedCameraVAEGAN(VAEGAN):
    scoring_methods = ("vaegan-z", "vaegan-attn-z")
    config: FixedCameraConfig

    def __init__(self, config: FixedCameraConfig):
        super().__init__(config)
        c = config
        if c.attention_cap < 0:
            raise ValueError(f"attention_cap is a number of σ (0 = no cap), not {c.attention_cap}")
        self.error_statistics = self._error_statistics(c.error_blur)
        self.attention_statistics = PixelStatistics(c.image_size, c.error_blur)
        if c.region_blur:
            self.region_statistics = self._error_statistics(c.region_blur)

    def _error_statistics(self, blur: float) -> PixelStatistics | NeighbourStatistics:
        size, k = self.config.image_size, self.config.neighbours
        return NeighbourStatistics(size, blur, k) if k else PixelStatistics(size, blur)

    def _error_scales(self) -> list[PixelStatistics | NeighbourStatistics]:
        return [self.error_statistics] + ([self.region_statistics] if self.config.region_blur else [])

    @torch.no_grad()
    def fit_normal_statistics(
        self,
        held_out: torch.Tensor,
        seen: torch.Tensor,
        remember: torch.Tensor | None = None,
        batch: int = 64,
    ) -> None:
        """Per-pixel statistics of the maps from the training frames: a frame's peak z finds
        the pixels whose spread was underestimated, so they need many frames (on the magnetic
        tiles, 571 training frames gave image AUROC 0.81 where 63 held-out ones gave 0.78).
        The held-out frames stay unbiased for the threshold."""
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
        self.attention_statistics.fit(self.grad_cam(x) for x in batches(seen))

    def error_z(self, error: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """z_e; with region_blur, the larger of the fine and the coarse one, so a faint defect
        spread over a region counts as well as a sharp one. ``code`` (the latent mean) picks
        the reference frames of NeighbourStatistics."""
        return torch.stack([statistics(error, code) for statistics in self._error_scales()]).amax(dim=0)

    def grad_cam_z(self, grad_cam: torch.Tensor) -> torch.Tensor:
        """z_A, the Grad-CAM map's z, capped at ``attention_cap``: on the magnetic tiles an uncapped
        z_A took image AUROC from 0.94 (error alone) to 0.84 in one of two trainings, where
        attention spikes on normal frames made the peaks; capped at 2 it gave 0.93-0.94 in both."""
        z = self.attention_statistics(grad_cam)
        return z.clamp_max(self.config.attention_cap) if self.config.attention_cap else z

    def score(self, x: torch.Tensor, method: str = "vaegan-attn-z") -> Scores:
        self.check_method(method)
        with torch.no_grad():
            code, _ = self.encoder(x)
            reconstruction = self.decode(code)
            error = self.error_z(absolute_error(x, reconstruction), code)
        if method == "vaegan-z":
            return Scores(score=error.flatten(1).amax(dim=1), reconstruction=reconstruction, error=error)
        attention = self.grad_cam(x)
        anomaly_map = error + self.grad_cam_z(attention)
        return Scores(
            score=anomaly_map.flatten(1).amax(dim=1),
            reconstruction=reconstruction,
            error=error,
            attention=attention,
            anomaly_map=anomaly_map,
        )


FAMILY = Family("vaegan-z", FixedCameraConfig, FixedCameraVAEGAN, VAEGANTrainer)
