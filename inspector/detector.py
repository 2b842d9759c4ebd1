"""The one object that turns frames into scores and maps: the CLI, workers, benchmarks and tests use it.

A checkpoint is a single file holding the weights, the model family and its configuration,
the frame configuration, the default thresholds (one per scoring method), a version hash
and training metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.config import FrameSpec
from inspector.frames import FrameError
from inspector.models import (
    AnomalyModel,
    Family,
    ModelConfig,
    Scores,
    family_of,
    family_of_config,
    format1,
    make_config,
)

CHECKPOINT_FORMAT = 2  # 1: one flat config for every family (models/format1.py)
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


def forward_batch(device: torch.device, batch_size: int = 0) -> int:
    """Frames per forward pass: ``batch_size``, else the device's default."""
    return batch_size or (CPU_BATCH if device.type == "cpu" else GPU_BATCH)


@dataclass
class Checkpoint:
    model_config: ModelConfig  # a family's config: its class names the family
    frame_spec: FrameSpec
    state_dict: dict[str, torch.Tensor]
    thresholds: dict[str, float]  # default threshold per scoring method
    metadata: dict[str, Any] = field(default_factory=dict)
    # A checkpoint read from a format-1 file: its config as that file held it, which its version
    # hashes (as it did when it was registered), so results and thresholds stay attached.
    format1_config: dict[str, Any] | None = None

    @property
    def family(self) -> Family:
        return family_of_config(self.model_config)

    @property
    def default_method(self) -> str:
        """The method training chose for this checkpoint (``metadata["method"]``), else its family's."""
        chosen = self.metadata.get("method")
        return chosen if chosen in self.family.methods else self.family.default_method

    @property
    def version(self) -> str:
        """A content hash of the weights, configuration and default thresholds: same model, same version."""
        digest = hashlib.sha256()
        if self.format1_config is not None:
            name = self.format1_config["family"]
            digest.update(json.dumps(self.format1_config, sort_keys=True).encode())
        else:
            name = self.family.name
            config = dataclasses.asdict(self.model_config)
            for key, before in self.model_config.UNVERSIONED.items():  # fields added since: at their
                if json.dumps(config[key]) == json.dumps(before):  # defaults, models keep their versions
                    del config[key]
            described = {"family": name, "config": config}
            digest.update(json.dumps({**described, "thresholds": self.thresholds}, sort_keys=True).encode())
        spec = dataclasses.asdict(self.frame_spec)
        for key, before in (("width", 0), ("raw_range", None)):  # fields added since: at what every
            if spec[key] == before:  # frame was before them (square; full scale), same versions
                del spec[key]
        digest.update(json.dumps(spec, sort_keys=True).encode())
        for key in sorted(self.state_dict):
            digest.update(key.encode())
            digest.update(self.state_dict[key].detach().cpu().contiguous().numpy().tobytes())
        return f"{name}-{digest.hexdigest()[:12]}"

    def description(self) -> dict[str, Any]:
        """What the database keeps of a checkpoint with its model rows (models.config): everything
        but the weights and the list of training frames (the file keeps those)."""
        return {
            "family": self.family.name,
            "model": dataclasses.asdict(self.model_config),
            "frames": dataclasses.asdict(self.frame_spec),
            "thresholds": self.thresholds,
            "metadata": {k: v for k, v in self.metadata.items() if k != "training_frames"},
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (in the current format), so a crash never leaves a half-written model behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "family": self.family.name,
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
        kind = payload.get("format") if isinstance(payload, dict) else None
        if kind not in (1, CHECKPOINT_FORMAT):
            raise CheckpointError(f"{path} is not an inspector model of format 1 or {CHECKPOINT_FORMAT}")
        spec = dict(payload["frame_spec"])
        for name in ("roi", "raw_range"):
            if spec.get(name) is not None:
                spec[name] = tuple(spec[name])
        thresholds = {k: float(v) for k, v in payload["thresholds"].items()}
        flat = None
        try:
            if kind == 1:
                flat, config, renamed = format1.read_config(payload["model_config"])
                thresholds = {renamed.get(k, k): v for k, v in thresholds.items()}
            else:
                config = make_config(payload["family"], payload["model_config"])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        return cls(
            model_config=config,
            frame_spec=FrameSpec(**spec),
            state_dict=payload["state_dict"],
            thresholds=thresholds,
            metadata=payload.get("metadata", {}),
            format1_config=flat,
        )


@dataclass
class Detection:
    """One frame's scores and maps at the model's resolution (its verdict: pipeline.thresholds)."""

    score: float
    reconstruction: np.ndarray  # (C, H, W) in [0, 1]
    error: np.ndarray  # (H, W)
    attention: np.ndarray | None  # (H, W) in [0, 1], where the method has one
    anomaly_map: np.ndarray  # (H, W): what the score is made of (the error, unless the method weighs it)


def map_arrays(frames: np.ndarray, detections: Sequence[Detection]) -> dict[str, np.ndarray]:
    """A batch's maps by kind (inspector.maps): the frames (N, C, H, W) and what the model made of them."""
    arrays = {
        "input": frames,
        "reconstruction": np.stack([d.reconstruction for d in detections]),
        "error": np.stack([d.error for d in detections]),
        "anomaly": np.stack([d.anomaly_map for d in detections]),
    }
    if detections and detections[0].attention is not None:
        arrays["attention"] = np.stack([d.attention for d in detections])
    return arrays


def score_batches(
    model: AnomalyModel, method: str, frames: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[Scores]:
    """Scores of frames (N, C, H, W) in [0, 1], ``batch_size`` frames per forward pass, in eval mode."""
    model.eval()
    for start in range(0, len(frames), batch_size):
        yield model.score(torch.from_numpy(frames[start : start + batch_size]).to(device), method)


def method_scores(
    model: AnomalyModel, methods: Sequence[str], frames: np.ndarray, batch_size: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Each method's scores (N,) of frames (N, C, H, W) in [0, 1], the methods of a batch together."""
    model.eval()
    batches = [
        model.score_methods(torch.from_numpy(frames[start : start + batch_size]).to(device), methods)
        for start in range(0, len(frames), batch_size)
    ]
    return {m: np.concatenate([b[m].score.detach().cpu().numpy() for b in batches]) for m in methods}


class Detector:
    """A trained model plus how to read frames for it and its default threshold."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        method: str | None = None,
        device: str = "auto",
        batch_size: int = 0,
    ):
        self.checkpoint = checkpoint
        family = checkpoint.family
        self.method = method or checkpoint.default_method
        if family_of(self.method) is not family:
            raise CheckpointError(
                f"method {self.method!r} needs a {family_of(self.method).name!r} model, "
                f"this one is {family.name!r} (its methods: {', '.join(family.methods)})"
            )
        self.device = resolve_device(device)
        self.batch_size = forward_batch(self.device, batch_size)
        self.model = family.model(checkpoint.model_config)
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
        """The method's default threshold, from the checkpoint."""
        return self.checkpoint.thresholds[self.method]

    def score_arrays(self, frames: np.ndarray | Sequence[np.ndarray]) -> list[Detection]:
        """Score preprocessed frames (N, C, H, W) in [0, 1], ``batch_size`` frames per forward pass."""
        batch = np.asarray(frames, dtype=np.float32)
        expected = (self.checkpoint.model_config.channels, *self.frame_spec.shape)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise FrameError(
                f"frames of shape {batch.shape[1:]} do not fit this model, which takes {expected}"
            )
        results: list[Detection] = []
        for out in score_batches(self.model, self.method, batch, self.batch_size, self.device):
            score, recon, error, anomaly_map = (
                t.cpu().numpy() for t in (out.score, out.reconstruction, out.error, out.anomaly_map)
            )
            attention = None if out.attention is None else out.attention.cpu().numpy()
            results += [
                Detection(
                    score=float(score[i]),
                    reconstruction=recon[i],
                    error=error[i],
                    attention=None if attention is None else attention[i],
                    anomaly_map=anomaly_map[i],
                )
                for i in range(len(score))
            ]
        return results
