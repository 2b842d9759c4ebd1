"""Patch memory on the whole frame (ours): textured surfaces under a fixed camera, depth frames.

The backbone sees the frame as it is, at its own shape (``FrameSpec.width`` keeps an
elongated frame's aspect, so a thin defect is not squashed away), and every 8×8 pixels of it
are a patch compared with the memory of normal ones (memory.py). The distance map comes
back to the frame's resolution (bilinear). The Grad-CAM VAEGAN sees the frame resized to
``attention_size`` square.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from inspector.models import backbone
from inspector.models.base import Family
from inspector.models.memory import MemoryConfig, MemoryModel, MemoryTrainer, Views
from inspector.models.vaegan import VAEGAN


@dataclass
class PatchMemoryConfig(MemoryConfig):
    attention_size: int = 64  # side of the frame as the Grad-CAM VAEGAN sees it


class PatchMemoryModel(MemoryModel):
    scoring_methods = (
        "patch-mean",
        "patch-max-inner",
        "patch-max-or-mean",
        "patch-ensemble",
        "patch-max",
    )
    config: PatchMemoryConfig

    def __init__(self, config: PatchMemoryConfig):
        super().__init__(config)
        self.network = VAEGAN(config, input_size=config.attention_size)

    def check_frames(self, shape: tuple[int, ...]) -> None:
        """Any shape of at least one stride-16 cell, with the config's channels."""
        if shape[0] != self.config.channels or min(shape[1:]) < 2 * backbone.STRIDE:
            raise ValueError(
                f"frames {tuple(shape)} do not fit a patch-memory model of {self.config.channels} channel(s) "
                f"(at least {2 * backbone.STRIDE} pixels a side)"
            )

    def views(self, x: torch.Tensor) -> Views:
        size = self.config.attention_size
        frame = tuple(x.shape[-2:])
        small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return Views(
            features=x,
            network=small,
            to_frame=lambda maps: F.interpolate(maps, size=frame, mode="bilinear", align_corners=False),
        )


FAMILY = Family("patch-memory", PatchMemoryConfig, PatchMemoryModel, MemoryTrainer)
