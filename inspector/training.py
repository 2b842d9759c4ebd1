"""Training loop shared by every family: seeded, with a validation split of normal frames.

A family brings its networks and its trainer (optimisers, update step, validation loss);
this loop brings the data: the split, the epochs, augmentation and early stopping.

The held-out normal frames serve twice: early stopping (their validation loss) and the
default threshold (a high quantile of their scores), so no anomalous frame is needed. In a
small set (SMALL_SET) a memory then takes them in as well.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

import inspector
from inspector.config import FrameSpec
from inspector.detector import Checkpoint, method_scores, resolve_device
from inspector.frames import FrameError, check_frames_vary, find_frames, read_frame
from inspector.models import AnomalyModel, ModelConfig, family_of_config


class TrainingError(ValueError):
    """Training cannot start: no frames, too few, or frames of mixed kinds."""


@dataclass
class TrainOptions:
    epochs: int = 20
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 0  # stop after this many epochs without a better validation loss (0 = never)
    shift: int = 0  # augmentation: random translation by up to this many pixels
    hflip: bool = False  # augmentation: random horizontal flip (only where mirror images are normal)
    gain: float = 0.0  # augmentation: multiply each frame by 1 ± up to this (exposure; keeps holes at 0)
    min_epoch_frames: int = 0  # an epoch shows at least this many (re-augmented) frames: small sets
    threshold_quantile: float = 0.99
    device: str = "auto"


ProgressFn = Callable[[int, dict[str, float]], None]
# After each epoch, given the model (eval mode, ready to score) and the held-out normal frames:
# a validation figure, higher = better; it then decides the best epoch instead of the loss.
MonitorFn = Callable[[AnomalyModel, torch.Tensor], float]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingFrames(NamedTuple):
    frames: np.ndarray  # (N, C, H, W)
    records: list[dict[str, Any]]  # each frame's file: {"path": absolute, "sha256": of its bytes, "level"}
    skipped: list[str]  # unreadable files, with the reason


def frame_record(path: Path) -> dict[str, str]:
    """What a checkpoint records of a training frame: its file and content hash (the hash a
    watcher registers it under), so a later retraining finds it again, or knows it changed."""
    return {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def load_training_frames(root: str, spec: FrameSpec, paths: Sequence[Path] | None = None) -> TrainingFrames:
    """All frames under root (``paths``, where the caller has listed them) as (N, C, H, W), with
    their records; unreadable files are listed, not fatal."""
    paths = find_frames(root) if paths is None else paths
    if not paths:
        raise TrainingError(f"no image files found under {root}")
    frames, records, skipped = [], [], []
    for path in paths:
        try:
            prepared = read_frame(path, spec)
            frames.append(prepared.pixels)
            records.append({**frame_record(path), "level": prepared.level})
        except (FrameError, OSError) as exc:
            skipped.append(f"{path}: {exc}")
    if not frames:
        raise TrainingError(f"none of the {len(paths)} files under {root} could be read; first: {skipped[0]}")
    stacked = np.stack(frames)
    if problem := check_frames_vary(stacked, spec):  # a model of blank frames scores all alike
        raise TrainingError(f"{root}: {problem}")
    return TrainingFrames(stacked, records, skipped)


LEVELS_KEPT = 1000  # a larger training set's frame levels are kept as this many quantiles


def level_reference(levels: Sequence[float]) -> list[float]:
    """The training frames' levels, sorted (as LEVELS_KEPT quantiles beyond that many), for the
    drift monitor. Every frame's counts, held out or not: a level does not depend on the fit."""
    kept = (
        sorted(levels) if len(levels) <= LEVELS_KEPT else np.quantile(levels, np.linspace(0, 1, LEVELS_KEPT))
    )
    return [round(float(level), 6) for level in kept]


def augment(x: torch.Tensor, options: TrainOptions, generator: torch.Generator) -> torch.Tensor:
    """Label-preserving jitter, drawn per frame: small translations (edge-padded), optional
    mirror images and a small exposure gain. Each keeps a normal frame normal; none of them
    may be larger than the differences the detector must notice."""
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    if options.shift > 0:
        s = options.shift
        padded = torch.nn.functional.pad(x, (s, s, s, s), mode="replicate")
        offsets = torch.randint(0, 2 * s + 1, (n, 2), generator=generator).tolist()
        x = torch.stack(
            [padded[i, :, dy : dy + height, dx : dx + width] for i, (dx, dy) in enumerate(offsets)]
        )
    if options.hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if options.gain > 0:
        gain = 1 + (2 * torch.rand(n, generator=generator) - 1) * options.gain
        x = (x * gain[:, None, None, None]).clamp(0.0, 1.0)
    return x


# Fewer normal frames than this are a small set: the two or three held out are a large share of
# it, so the label-free choice holds out each frame in turn (selection.py), and a model that
# remembers normal frames (a memory) takes in the held-out ones too once the threshold is set.
# On the depth hand poses (6 training frames) a memory of the 4 left after the split ranked the
# other poses at 0.5 (glimpse-max) where one of all 6 reached 0.955.
SMALL_SET = 20


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices. At least two frames are held out once there are five, so
    early stopping and the threshold rest on unseen frames even for tens of frames; below
    five, every frame trains, and the threshold comes from the training frames (optimistic; a
    memory's from each frame scored by a memory of the others: ``leave_one_out_scores``)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if fraction <= 0 or n < 5 else min(max(round(n * fraction), 2), n - 3)
    return order[n_val:], order[:n_val]


def split_frames(
    n: int,
    options: TrainOptions,
    heldout: Sequence[bool] | None = None,
    remember: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices: ``heldout`` where given (a retraining holds out the frames its
    live model held out, so the two differ only by the frames added), else ``split_validation``
    among the frames not marked ``remember``, which always train."""
    keep = np.zeros(n, bool) if remember is None else np.asarray(remember, bool)
    if heldout is not None:
        held = np.asarray(heldout, bool)
        if len(held) != n or len(keep) != n:
            raise TrainingError(f"a split of {len(held)} and {len(keep)} frames for {n} frames")
        if (held & keep).any():
            raise TrainingError("a frame to remember cannot be held out")
        return np.flatnonzero(~held), np.flatnonzero(held)
    if len(keep) != n:
        raise TrainingError(f"{len(keep)} frames to remember or not for {n} frames")
    free = np.flatnonzero(~keep)
    train_idx, val_idx = split_validation(len(free), options.val_fraction, options.seed)
    return np.r_[free[train_idx], np.flatnonzero(keep)], free[val_idx]


def epoch_order(n: int, min_frames: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch's frame indices: whole shuffles, repeated until at least min_frames, so that
    ten frames still give enough optimisation steps (augmentation makes the repeats differ)."""
    repeats = max(1, -(-min_frames // n))
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(repeats)])


def leave_one_out_scores(
    model: AnomalyModel,
    methods: Sequence[str],
    frames: torch.Tensor,
    remember: torch.Tensor | None,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Each method's score of each frame by a memory of the other frames: what sets a memory's
    threshold where too few frames were given to hold any out (below five)."""
    every = torch.arange(len(frames))
    rounds = []
    for i in range(len(frames)):
        others = every != i
        flags = None if remember is None else remember[others]
        model.fit_normal_statistics(frames[i : i + 1].to(device), frames[others].to(device), remember=flags)
        rounds.append(method_scores(model, methods, frames[i : i + 1].numpy(), 1, device))
    return {method: np.concatenate([r[method] for r in rounds]) for method in methods}


def train(
    frames: np.ndarray,
    config: ModelConfig,
    spec: FrameSpec,
    options: TrainOptions,
    progress: ProgressFn | None = None,
    monitor: MonitorFn | None = None,
    records: Sequence[dict[str, Any]] | None = None,
    *,
    heldout: Sequence[bool] | None = None,
    remember: Sequence[bool] | None = None,
) -> Checkpoint:
    """Fit one model family on normal frames (N, C, H, W) and return its checkpoint. With a
    ``monitor``, the epoch it rates best is kept (and patience counts from it), not the one of
    the lowest validation loss.

    ``heldout`` fixes the split (one flag per frame) instead of drawing it; ``remember`` marks
    frames that always train and that a memory keeps whole (``fit_normal_statistics``): a
    retraining's reviewed false alarms, the normal appearance the live model lacked.

    ``records`` (one per frame: its path and content hash, and its level where known) go into the
    checkpoint's metadata, marked held out or not, beside the held-out frames' scores per method:
    what a retraining starts from and what the drift monitor compares recent scores with. Their
    levels become the drift monitor's reference of frame levels (``level_reference``).
    """
    if frames.ndim != 4 or len(frames) == 0:
        raise TrainingError("training needs a non-empty batch of frames (N, C, H, W)")
    seed_everything(options.seed)
    device = resolve_device(options.device)
    train_idx, val_idx = split_frames(len(frames), options, heldout, remember)
    train_x = torch.from_numpy(frames[train_idx])
    whole = None if remember is None else torch.from_numpy(np.asarray(remember, bool)[train_idx])
    val_frames = frames[val_idx] if len(val_idx) else frames[train_idx]
    val_x = torch.from_numpy(val_frames).to(device)

    family = family_of_config(config)
    model = family.model(config).to(device)
    try:
        model.check_frames(frames.shape[1:])
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    trainer = family.trainer(model)
    generator = torch.Generator().manual_seed(options.seed)
    batch_size = min(config.batch_size, len(train_x))
    best = (float("inf"), copy.deepcopy(model.state_dict()), 0)
    started = time.time()
    history = []
    for epoch in range(1, options.epochs + 1):
        model.train()
        order = epoch_order(len(train_x), options.min_epoch_frames, generator)
        sums: dict[str, float] = {}
        steps = 0
        # Drop a last batch of one: BatchNorm cannot train on it.
        for start in range(0, len(order) - (1 if len(order) % batch_size == 1 else 0), batch_size):
            x = augment(train_x[order[start : start + batch_size]], options, generator).to(device)
            for name, value in trainer.step(x).items():
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
        model.eval()
        losses = {name: value / max(steps, 1) for name, value in sums.items()}
        losses["val"] = trainer.validation_loss(val_x)
        if monitor:
            model.fit_normal_statistics(val_x, train_x, remember=whole)
            losses["monitor"] = monitor(model, val_x)
        history.append(losses)
        if progress:
            progress(epoch, losses)
        criterion = -losses["monitor"] if monitor else losses["val"]
        if criterion < best[0]:
            best = (criterion, copy.deepcopy(model.state_dict()), epoch)
        elif options.patience and epoch - best[2] >= options.patience:
            break
    keep_best = bool(options.patience or monitor)
    if keep_best:
        model.load_state_dict(best[1])
    model.eval()
    one_out = not len(val_idx) and model.remembers_frames and len(train_x) > 1
    if one_out:  # none held out: a memory of all would score its own frames ~0 and flag every frame
        val_scores = leave_one_out_scores(model, family.methods, train_x, whole, device)
    model.fit_normal_statistics(val_x, train_x, remember=whole)
    if not one_out:
        val_scores = method_scores(model, family.methods, val_frames, 64, device)
    thresholds, heldout_scores = {}, {}
    for method, scores in val_scores.items():
        thresholds[method] = float(np.quantile(scores, options.threshold_quantile))
        heldout_scores[method] = [float(score) for score in scores]
    if len(val_idx) and len(frames) < SMALL_SET:
        flags = None if remember is None else torch.from_numpy(np.asarray(remember, bool))
        model.remember_all(torch.from_numpy(frames).to(device), flags)
    metadata = {
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "frames": int(len(frames)),
        "train_frames": int(len(train_idx)),
        "validation_frames": int(len(val_idx)),
        "threshold_from": "held-out frames"
        if len(val_idx)
        else ("each frame by a memory of the others" if one_out else "training frames"),
        "epochs_run": len(history),
        "best_epoch": best[2] if keep_best else len(history),
        "options": dataclasses.asdict(options),
        "history": history,
        "heldout_scores": heldout_scores,  # per method, of the frames the threshold came from
        "inspector": inspector.__version__,
        "torch": str(torch.__version__),
        "host": platform.node(),
    }
    if records is not None:
        if len(records) != len(frames):
            raise TrainingError(f"{len(records)} frame records for {len(frames)} frames")
        apart = set(val_idx.tolist())
        kept = set() if remember is None else set(np.flatnonzero(remember).tolist())
        metadata["training_frames"] = [
            {**r, "heldout": i in apart, **({"remembered": True} if i in kept else {})}
            for i, r in enumerate(records)
        ]
        if levels := [r["level"] for r in records if "level" in r]:
            metadata["frame_levels"] = level_reference(levels)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Checkpoint(config, spec, state, thresholds, metadata)
