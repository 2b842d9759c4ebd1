"""The one object that turns frames into results: the CLI, workers, benchmarks and tests use it.

A checkpoint is a single file holding the weights, the model and frame configuration,
the default thresholds (one per scoring method), a version hash and training metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.config import FrameSpec
from inspector.frames import FrameError
from inspector.models import AnomalyModel, ModelConfig, build_model, default_method, family_of

CHECKPOINT_FORMAT = 1
# Frames per forward pass when none is asked for. On a CPU small batches keep the activations
# in cache: two one-thread scorers (84×84 VAEGAN) scored 600-710 frames/s at 8 and 16 and
# 510-600 at 64 alone, and in the pipeline's burst 16 did best (bench/throughput.py).
# A GPU wants as many as it is given.
CPU_BATCH = 16
GPU_BATCH = 256


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or of another format."""


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Checkpoint:
    model_config: ModelConfig
    frame_spec: FrameSpec
    state_dict: dict[str, torch.Tensor]
    thresholds: dict[str, float]  # default threshold per scoring method
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """A content hash of the weights and configuration: same model, same version."""
        digest = hashlib.sha256()
        digest.update(json.dumps(dataclasses.asdict(self.model_config), sort_keys=True).encode())
        digest.update(json.dumps(dataclasses.asdict(self.frame_spec), sort_keys=True).encode())
        for name in sorted(self.state_dict):
            digest.update(name.encode())
            digest.update(self.state_dict[name].detach().cpu().contiguous().numpy().tobytes())
        return f"{self.model_config.family}-{digest.hexdigest()[:12]}"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, so a crash never leaves a half-written model behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "model_config": dataclasses.asdict(self.model_config),
            "frame_spec": dataclasses.asdict(self.frame_spec),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "thresholds": dict(self.thresholds),
            "metadata": self.metadata,
            "version": self.version,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Checkpoint:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"model file not found: {path}")
        try:
            payload = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a damaged file
            raise CheckpointError(f"{path} is not a readable inspector model: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not an inspector model of format {CHECKPOINT_FORMAT}")
        spec = dict(payload["frame_spec"])
        if spec.get("roi") is not None:
            spec["roi"] = tuple(spec["roi"])
        return cls(
            model_config=ModelConfig(**payload["model_config"]),
            frame_spec=FrameSpec(**spec),
            state_dict=payload["state_dict"],
            thresholds={k: float(v) for k, v in payload["thresholds"].items()},
            metadata=payload.get("metadata", {}),
        )


@dataclass
class Detection:
    """One frame's result at the model's resolution."""

    score: float
    threshold: float
    reconstruction: np.ndarray  # (C, H, W) in [0, 1]
    error: np.ndarray  # (H, W)
    attention: np.ndarray | None  # (H, W) in [0, 1]
    anomaly_map: np.ndarray  # (H, W): the map the score sums up (the error, unless the method weighs it)

    @property
    def is_anomaly(self) -> bool:
        return self.score > self.threshold


class Detector:
    """A trained model plus how to read frames for it and where to draw the line."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        method: str | None = None,
        device: str = "auto",
        batch_size: int = 0,
    ):
        self.checkpoint = checkpoint
        family = checkpoint.model_config.family
        self.method = method or default_method(family)
        if family_of(self.method) != family:
            raise CheckpointError(
                f"method {self.method!r} needs a {family_of(self.method)!r} model, this one is {family!r}"
            )
        self.device = resolve_device(device)
        self.batch_size = batch_size or (CPU_BATCH if self.device.type == "cpu" else GPU_BATCH)
        self.model: AnomalyModel = build_model(checkpoint.model_config)
        self.model.load_state_dict(checkpoint.state_dict)
        self.model.to(self.device).eval()
        self.version = checkpoint.version

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        method: str | None = None,
        device: str = "auto",
        batch_size: int = 0,
    ) -> Detector:
        return cls(Checkpoint.load(path), method=method, device=device, batch_size=batch_size)

    @property
    def frame_spec(self) -> FrameSpec:
        return self.checkpoint.frame_spec

    @property
    def threshold(self) -> float:
        return self.checkpoint.thresholds[self.method]

    def score_arrays(
        self, frames: np.ndarray | Sequence[np.ndarray], threshold: float | None = None
    ) -> list[Detection]:
        """Score preprocessed frames (N, C, H, W) in [0, 1], ``batch_size`` frames per forward pass."""
        batch = np.asarray(frames, dtype=np.float32)
        expected = (
            self.checkpoint.model_config.channels,
            self.frame_spec.image_size,
            self.frame_spec.image_size,
        )
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise FrameError(
                f"frames of shape {batch.shape[1:]} do not fit this model, which takes {expected}"
            )
        threshold = self.threshold if threshold is None else threshold
        results: list[Detection] = []
        for start in range(0, len(batch), self.batch_size):
            x = torch.from_numpy(batch[start : start + self.batch_size]).to(self.device)
            out = self.model.score(x, self.method)
            attention = None if out.attention is None else out.attention.cpu().numpy()
            score, recon, error, anomaly_map = (
                out.score.cpu().numpy(),
                out.reconstruction.cpu().numpy(),
                out.error.cpu().numpy(),
                out.anomaly_map.cpu().numpy(),
            )
            for i in range(len(x)):
                results.append(
                    Detection(
                        score=float(score[i]),
                        threshold=threshold,
                        reconstruction=recon[i],
                        error=error[i],
                        attention=None if attention is None else attention[i],
                        anomaly_map=anomaly_map[i],
                    )
                )
        return results
