"""Hyper-parameter selection for the noisy-MNIST table without test labels.

For a normal digit k, the validation set is built from *training* images of k that the
model never saw: half stay normal, half get a synthetic defect (flipped, mirrored, a
block erased, or a stroke added) before the noisy-MNIST rendering. Candidates are
compared by their ROC-AUC on this set, averaged over the selection digits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from bench.mnist import load_mnist
from inspector.sample_data import noisy_frames

if TYPE_CHECKING:  # torch is imported on use
    from inspector.models.glimpse_vaegan import GlimpseVAEGAN

CORRUPTIONS = ("flip", "mirror", "erase", "stroke")


def corrupt(digit: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A synthetic defect on a 28×28 digit in [0, 1]."""
    if kind == "flip":
        return digit[::-1].copy()
    if kind == "mirror":
        return digit[:, ::-1].copy()
    out = digit.copy()
    if kind == "erase":
        ys, xs = np.nonzero(digit > 0.5)
        i = rng.integers(len(ys))
        out[max(0, ys[i] - 5) : ys[i] + 5, max(0, xs[i] - 5) : xs[i] + 5] = 0.0
        return out
    (x0, y0), (x1, y1) = rng.integers(4, 24, size=(2, 2))
    return np.maximum(out, cv2.line(np.zeros_like(out), (int(x0), int(y0)), (int(x1), int(y1)), 1.0, 2))


def validation_set(
    folder: str, normal: int, skip: int, size: int = 500, seed: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (2·size, 1, 84, 84) and labels (1 = corrupted) from unseen training images of k."""
    train = load_mnist(folder, "train")
    digits = train.images[train.labels == normal][skip : skip + size]
    rng = np.random.default_rng(seed)
    corrupted = np.stack([corrupt(d, CORRUPTIONS[i % len(CORRUPTIONS)], rng) for i, d in enumerate(digits)])
    frames = noisy_frames(np.concatenate([digits, corrupted]), seed)
    return frames, np.repeat([0, 1], len(digits))


def attended_scores(
    model: GlimpseVAEGAN, frames: np.ndarray, fractions: tuple[float, ...], blurs: tuple[float, ...]
) -> dict:
    """Validation scores of one trained glimpse VAEGAN under each (blur, top fraction) variant
    of its pixel term s_pix (see inspector.models.glimpse_vaegan)."""
    import torch

    from inspector.models.glimpse_vaegan import top_fraction_error

    out: dict[str, list[np.ndarray]] = {}
    model.eval()
    for i in range(0, len(frames), 250):
        error = model.glimpsed(torch.from_numpy(frames[i : i + 250])).error
        out.setdefault("mean error", []).append(error.mean(dim=(1, 2)).numpy())
        for blur in blurs:
            for fraction in fractions:
                top = top_fraction_error(error, blur, fraction)[0].numpy()
                out.setdefault(f"top {fraction:g}, blur {blur:g}", []).append(top)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def main() -> None:
    """Validation ROC-AUC of one glimpse-VAEGAN candidate on one selection digit (no test labels)."""
    import argparse
    import json
    import time

    import torch
    from sklearn.metrics import roc_auc_score

    from inspector.config import FrameSpec
    from inspector.models.glimpse_vaegan import GlimpseConfig, GlimpseVAEGAN
    from inspector.training import TrainOptions, train

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", default="../shared/data/mnist")
    parser.add_argument("--digit", type=int, required=True)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", nargs="*", default=[], help="GlimpseConfig overrides, key=value (JSON values)"
    )
    parser.add_argument("--validation-skip", type=int, default=5000, help="validation images start here")
    parser.add_argument("--save", help="also write the trained checkpoint here")
    args = parser.parse_args()

    torch.set_num_threads(1)
    overrides = {"width": 32, "lr": 1e-3, "gan_weight": 0.1}
    overrides.update({k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)})
    train_images = load_mnist(args.data, "train")
    digits = train_images.images[train_images.labels == args.digit][: args.train_size]
    started = time.time()
    checkpoint = train(
        noisy_frames(digits, 0),
        GlimpseConfig(**overrides),
        FrameSpec(),
        TrainOptions(epochs=args.epochs, seed=args.seed, device="cpu"),
    )
    if args.save:
        checkpoint.save(args.save)
    model = GlimpseVAEGAN(checkpoint.model_config)
    model.load_state_dict(checkpoint.state_dict)
    frames, labels = validation_set(args.data, args.digit, skip=args.validation_skip)
    scores = attended_scores(model, frames, fractions=(0.02, 0.05, 0.1, 0.2), blurs=(1.0, 2.0))
    result = {
        "digit": args.digit,
        "train_size": args.train_size,
        "epochs": args.epochs,
        "seed": args.seed,
        "model": overrides,
        "seconds": round(time.time() - started, 1),
        "auc": {name: round(float(roc_auc_score(labels, s)), 4) for name, s in scores.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
