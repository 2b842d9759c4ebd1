"""Patch memory on the glimpse (ours): objects on a plain background, at any size and place.

The object is found and resampled to a canonical square (glimpse.py, the crop of the
``vaegan+`` family and of the classic glimpse-kNN baseline), at ``backbone_size`` pixels
for the backbone (112: 14×14 patches) and at ``glimpse_size`` for the Grad-CAM VAEGAN
(28, the ``vaegan+`` glimpse). Each patch of the glimpse is compared with the memory of
normal glimpse patches (memory.py); maps go back to the frame through θ⁻¹ (zero outside
the glimpse). ``glimpse-pixels`` compares the whole glimpse, 28×28 pixels of the frame
smoothed by σ PIXEL_BLUR, with the training frames' own (the classic glimpse-kNN peer:
``bench/peers.py``); its map is the memory's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from inspector.models.base import Family
from inspector.models.glimpse import GlimpseFields, glimpse, locate_with, unglimpse
from inspector.models.memory import MemoryConfig, MemoryModel, MemoryTrainer, Views
from inspector.models.vaegan import VAEGAN


@dataclass
class GlimpseMemoryConfig(GlimpseFields, MemoryConfig):
    backbone_size: int = 112  # side of the glimpse the backbone sees (14×14 patches of 8 px)
    UNVERSIONED: ClassVar[dict[str, Any]] = {**MemoryConfig.UNVERSIONED, "glimpse_polarity": 1.0}


PIXEL_SIDE, PIXEL_BLUR = 28, 1.5  # the glimpse-pixels view: the glimpse-kNN peer's


class GlimpseMemoryModel(MemoryModel):
    scoring_methods = ("glimpse-mean", "glimpse-ensemble", "glimpse-pixels", "glimpse-max")
    default_ensemble = ("glimpse-mean", "glimpse-max")
    pixel_view_size = PIXEL_SIDE
    config: GlimpseMemoryConfig

    def __init__(self, config: GlimpseMemoryConfig):
        super().__init__(config)
        self.network = VAEGAN(config, input_size=config.glimpse_size)

    def check_frames(self, shape: tuple[int, ...]) -> None:
        """Any shape, with the config's channels: the glimpse is resampled from it."""
        if shape[0] != self.config.channels:
            channels = self.config.channels
            raise ValueError(f"frames {tuple(shape)} do not have the model's {channels} channel(s)")

    def views(self, x: torch.Tensor) -> Views:
        c = self.config
        theta = locate_with(x, c)
        frame = (x.shape[-2], x.shape[-1])
        return Views(
            features=glimpse(x, theta, c.backbone_size, c.glimpse_blur),
            network=glimpse(x, theta, c.glimpse_size, c.glimpse_blur),
            to_frame=lambda maps: unglimpse(maps, theta, frame),
            pixels=glimpse(x, theta, PIXEL_SIDE, PIXEL_BLUR),
        )


FAMILY = Family("glimpse-memory", GlimpseMemoryConfig, GlimpseMemoryModel, MemoryTrainer)
