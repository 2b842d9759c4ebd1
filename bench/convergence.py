"""One label-free stopping rule for every method of the benchmark tables.

Each epoch, every scoring method of the model being trained scores the held-out normal frames
of training (``inspector.training`` keeps them apart) and synthetic anomalies made from
them; the rule's figure is the mean ROC-AUC over the family's methods. Training stops after
``patience`` epochs without a better figure, or at ``max_epochs``, and the best epoch's
weights are kept. No test frame and no real anomaly is seen.

Synthetic anomalies are made from each normal frame in four ways, all relative to the object
the frame shows (located as ``inspector.models.glimpse`` locates it), so they mean the same at
every scale and in any kind of frame (grey, depth):

- ``flip``: the frame upside down;  ``mirror``: left and right swapped;
- ``erase``: a square a third of the object's side, around a point of it, replaced by the
  frame's own background (a square of the same size from the corner farthest from the object);
- ``stroke``: a line across the object, as bright as the object's brightest pixels.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from inspector.config import FrameSpec
from inspector.models import AnomalyModel, ModelConfig, family_of_config
from inspector.models.glimpse import locate
from inspector.training import TrainOptions, train

KINDS = ("flip", "mirror", "erase", "stroke")


@dataclass(frozen=True)
class StoppingRule:
    """The rule, as the results files state it."""

    patience: int = 5  # epochs without a better validation AUROC before stopping
    max_epochs: int = 30
    normals: int = 100  # held-out normal frames used (each gives one anomaly of every kind)


def object_box(frame: np.ndarray) -> tuple[float, float, float]:
    """Centre (x, y) and side, in pixels, of the object's square box in a (C, H, W) frame."""
    theta = locate(torch.from_numpy(frame[None]), sigma=1.0, threshold=0.25, fill=1.0)[0].numpy()
    height, width = frame.shape[-2:]
    side = theta[0, 0] * width
    return (theta[0, 2] + 1) * width / 2, (theta[1, 2] + 1) * height / 2, side


def corrupt(frame: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One synthetic anomaly made from a normal (C, H, W) frame in [0, 1]."""
    if kind == "flip":
        return frame[:, ::-1].copy()
    if kind == "mirror":
        return frame[:, :, ::-1].copy()
    height, width = frame.shape[-2:]
    cx, cy, side = object_box(frame)
    out = frame.copy()
    if kind == "erase":
        half = max(1, round(side / 6))
        x = int(np.clip(cx + rng.uniform(-0.25, 0.25) * side, half, width - half))
        y = int(np.clip(cy + rng.uniform(-0.25, 0.25) * side, half, height - half))
        by = 0 if cy > height / 2 else height - 2 * half  # the corner farthest from the object
        bx = 0 if cx > width / 2 else width - 2 * half
        out[:, y - half : y + half, x - half : x + half] = frame[:, by : by + 2 * half, bx : bx + 2 * half]
        return out
    if kind == "stroke":
        ends = np.array([cx, cy]) + rng.uniform(-0.5, 0.5, size=(2, 2)) * side
        (x0, y0), (x1, y1) = np.round(ends).astype(int)
        thickness = max(1, round(side / 14))
        line = cv2.line(np.zeros((height, width), np.float32), (x0, y0), (x1, y1), 1.0, thickness) > 0
        for channel in out:
            channel[line] = np.maximum(channel[line], np.quantile(channel, 0.99))
        return out
    raise ValueError(f"unknown anomaly kind {kind!r}; choose from {KINDS}")


def synthetic_validation(normals: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The normals and, after them, one anomaly of every kind made from each: (frames, labels)."""
    rng = np.random.default_rng(seed)
    anomalies = [corrupt(frame, kind, rng) for kind in KINDS for frame in normals]
    frames = np.concatenate([normals, np.stack(anomalies)]).astype(np.float32)
    return frames, np.repeat([0, 1], [len(normals), len(anomalies)])


@dataclass
class ValidationAUROC:
    """The monitor ``inspector.training.train`` calls after each epoch: it records every
    method's validation AUROC (``curves``) and returns their mean."""

    methods: tuple[str, ...]
    rule: StoppingRule = StoppingRule()
    batch_size: int = 100
    curves: dict[str, list[float]] = field(default_factory=dict)
    _set: tuple[torch.Tensor, np.ndarray] | None = None

    def __call__(self, model: AnomalyModel, held_out: torch.Tensor) -> float:
        if self._set is None:  # the held-out frames are the same every epoch: build once
            normals = held_out[: self.rule.normals].cpu().numpy()
            frames, labels = synthetic_validation(normals)
            self._set = torch.from_numpy(frames).to(held_out.device), labels
        frames, labels = self._set
        figures = []
        for method in self.methods:
            scores = torch.cat(
                [
                    model.score(frames[i : i + self.batch_size], method).score
                    for i in range(0, len(frames), self.batch_size)
                ]
            )
            figures.append(float(roc_auc_score(labels, scores.detach().cpu().numpy())))
            self.curves.setdefault(method, []).append(round(figures[-1], 4))
        return float(np.mean(figures))


def log_epoch(epoch: int, losses: dict[str, float]) -> None:
    """A line per epoch on stderr: a run takes up to tens of minutes on a shared CPU."""
    line = f"  epoch {epoch}: validation AUROC {losses['monitor']:.4f}, validation loss {losses['val']:.4g}"
    print(line, file=sys.stderr, flush=True)


def train_to_convergence(
    frames: np.ndarray,
    config: ModelConfig,
    spec: FrameSpec,
    rule: StoppingRule,
    seed: int,
    device: str,
    **options,
) -> tuple[AnomalyModel, dict]:
    """Train under the rule; the model of the best epoch (eval mode) and the training record:
    epochs run, best epoch, and per epoch every method's validation AUROC and every loss term.
    ``options``: further TrainOptions (augmentation, epoch length)."""
    family = family_of_config(config)
    monitor = ValidationAUROC(family.methods, rule)
    settings = TrainOptions(
        epochs=rule.max_epochs, patience=rule.patience, seed=seed, device=device, **options
    )
    checkpoint = train(frames, config, spec, settings, progress=log_epoch, monitor=monitor)
    model = family.model(config)
    model.load_state_dict(checkpoint.state_dict)
    history = checkpoint.metadata["history"]
    losses = {name: [round(epoch[name], 5) for epoch in history] for name in history[0] if name != "monitor"}
    record = {
        "epochs_run": checkpoint.metadata["epochs_run"],
        "best_epoch": checkpoint.metadata["best_epoch"],
        "curves": {"validation_auroc": monitor.curves, "losses": losses},
    }
    return model.to(device).eval(), record
