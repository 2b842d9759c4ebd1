"""Would weighting the anomaly map by its frame's score help? A label-free probe (issue 18).

Pooled pixel ROC-AUC counts every pixel of every frame together, so a normal frame whose map is
bright everywhere costs as much as a missed defect. Weighting the map by the frame's score would
quiet the maps of frames scored normal. This measures, on a trained checkpoint's own validation
(the held-out 10% of its training frames, the split training uses, and the synthetic anomalies made
from them, where each defect's pixels are known), the pooled pixel ROC-AUC of the map as it is and
of weighted variants. No test frame is read.

    python -m bench.map_weighting MODEL TRAINING_FOLDER   # a memory family's checkpoint
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from inspector.detector import Detector
from inspector.frames import find_frames, load_frame
from inspector.selection import PIXEL_SAMPLE, auroc, validation_outputs
from inspector.synthetic import anomalies, masks
from inspector.training import split_validation


def variants(maps: np.ndarray, scores: np.ndarray, normal: int) -> dict[str, np.ndarray]:
    """Maps (N, P) weighted by their frames' scores (N,), the first ``normal`` frames normal."""
    z = (scores - scores[:normal].mean()) / scores[:normal].std()
    median = np.median(maps, axis=1, keepdims=True)
    return {
        "the map": maps,
        "× sigmoid(z)": maps / (1 + np.exp(-z))[:, None],
        "× sigmoid(z − 1)": maps / (1 + np.exp(1 - z))[:, None],
        "× max(z, 0)": maps * np.maximum(z, 0)[:, None],
        "× exp(z / 2)": maps * np.exp(z / 2)[:, None],
        "− the frame's median": maps - median,
        "÷ the frame's median": maps / median,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("training_folder", help="the folder the model was trained on")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    detector = Detector.load(args.model, device="cpu")
    spec, method = detector.checkpoint.frame_spec, detector.method
    frames = np.stack([load_frame(p, spec) for p in find_frames(args.training_folder)])
    seen, held = split_validation(len(frames), 0.1, 0)
    synthetic, _kinds = anomalies(frames[held], frames[seen], seed=0)
    validation = np.concatenate([frames[held], synthetic])
    places = np.random.default_rng(0).permutation(frames[0, 0].size)[:PIXEL_SAMPLE]
    defects = np.concatenate(
        [
            np.zeros((len(held), len(places)), bool),
            masks(frames[held], synthetic).reshape(len(synthetic), -1)[:, places],
        ]
    )
    config = detector.model.config
    chosen = [(config.map_smooth, config.map_z)]  # the map training chose
    device = torch.device("cpu")
    scores, maps = validation_outputs(detector.model, [method], validation, places, device, chosen)
    score, sampled = scores[method], maps[0]
    labels = np.repeat([0, 1], [len(held), len(synthetic)])
    print(f"{method}: image ROC-AUC {auroc(labels, score):.3f} on {len(held)} held out and their anomalies")
    for name, weighted in variants(sampled, score, len(held)).items():
        print(f"  {name}: pooled pixel ROC-AUC {auroc(defects.ravel(), weighted.ravel()):.3f}")


if __name__ == "__main__":
    main()
