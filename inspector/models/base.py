"""What every family shares: the common hyper-parameters, a batch's scores, the interfaces of
a model and of its trainer, and the record that registers a family (see models/__init__.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn


@dataclass
class ModelConfig:
    """The hyper-parameters every family has. A family's config adds its own fields; the
    checkpoint stores it whole, with the family's name."""

    image_size: int = 84
    channels: int = 1
    latent_dim: int = 64
    width: int = 32
    lr: float = 2e-4
    batch_size: int = 64
    # Fields added after models of the family were saved, with the value they had in effect
    # before: at it, a field is left out of the version hash, so those models keep their versions.
    UNVERSIONED: ClassVar[dict[str, Any]] = {}


@dataclass
class Scores:
    """Per-frame output of a scoring method, batched on the first dimension."""

    score: torch.Tensor  # (N,)
    reconstruction: torch.Tensor  # (N, C, H, W)
    error: torch.Tensor  # (N, H, W): |x − x̃|, or its z where the method measures it against normal frames
    # (N, H, W) in [0, 1], where the method has one: the discriminator's Grad-CAM map (vaegan-attn,
    # vaegan-attn-z) or the glimpse's top-fraction error mask (vaegan-attn+)
    attention: torch.Tensor | None = None
    anomaly_map: torch.Tensor | None = None  # (N, H, W): what the score is made of; None = the error

    def __post_init__(self) -> None:
        if self.anomaly_map is None:
            self.anomaly_map = self.error


class AnomalyModel(nn.Module):
    """A family's networks, trained on normal frames only, and its scoring methods."""

    scoring_methods: tuple[str, ...] = ()  # the methods this family scores with, the recommended last
    # Scores a frame by its distance to remembered normal frames: one it remembers scores ~0, so
    # its threshold must come from frames it does not remember (training.leave_one_out_scores).
    remembers_frames: bool = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    def check_method(self, method: str) -> None:
        if method not in self.scoring_methods:
            raise ValueError(f"{type(self).__name__} scores with {self.scoring_methods}, not {method!r}")

    def check_frames(self, shape: tuple[int, ...]) -> None:
        """Refuse frames (C, H, W) this model cannot take: most families see square frames of
        ``image_size``; those that take any shape say so."""
        c = self.config
        if tuple(shape) != (c.channels, c.image_size, c.image_size):
            raise ValueError(
                f"frames {tuple(shape)} do not match the model ({c.channels}, {c.image_size}, {c.image_size})"
            )

    def score(self, x: torch.Tensor, method: str) -> Scores:
        """Anomaly scores (higher = more anomalous) and maps; call in eval mode."""
        raise NotImplementedError

    def score_methods(self, x: torch.Tensor, methods: Sequence[str]) -> dict[str, Scores]:
        """Several methods' scores of one batch; a family whose methods share most of their work
        (a memory's distances) computes it once."""
        return {method: self.score(x, method) for method in methods}

    def fit_normal_statistics(
        self, held_out: torch.Tensor, seen: torch.Tensor, remember: torch.Tensor | None = None
    ) -> None:
        """After training: learn from normal frames what scoring needs besides the weights (kept
        in buffers, so saved with them). ``held_out`` were not trained on, ``seen`` were; the
        held-out ones also set the default threshold. ``remember`` (one flag per seen frame)
        marks frames a family that keeps a subset of what it saw keeps whole (a memory's
        patches); the others learn from every seen frame alike. Most methods need nothing."""

    def remember_all(self, frames: torch.Tensor, remember: torch.Tensor | None = None) -> None:
        """Once the threshold is set: take in every normal frame, held-out ones too, where scoring
        compares a frame with remembered normal ones (a memory). A larger memory only lowers
        normal frames' scores, so the threshold from the held-out frames stays on the safe side;
        training does this where the held-out frames are a large share of a small set.
        ``remember`` as for ``fit_normal_statistics``. Models that remember no frames ignore it."""


class Trainer(Protocol):
    """A family's optimisers and update step, apart from its networks (scoring needs neither)."""

    def step(self, x: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch of normal frames; returns the loss terms."""
        ...

    def validation_loss(self, x: torch.Tensor) -> float:
        """A loss on held-out normal frames for early stopping (lower is better)."""
        ...


@dataclass(frozen=True)
class Family:
    """A model family as the rest of inspector sees it. Adding one is writing its module (config,
    networks and scores, loss terms, trainer) and registering its Family in models/__init__.py."""

    name: str  # stored in the checkpoint; the version starts with it
    config: type[ModelConfig]
    model: type[AnomalyModel]
    trainer: type[Trainer]

    @property
    def methods(self) -> tuple[str, ...]:
        return self.model.scoring_methods

    @property
    def default_method(self) -> str:
        """The method a checkpoint of this family scores with unless told otherwise."""
        return self.methods[-1]


def absolute_error(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The error image |x − x̃|, averaged over channels: (N, H, W)."""
    return (x - reconstruction).abs().mean(dim=1)
