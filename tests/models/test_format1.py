"""Checkpoints of format 1, written at 0502fcc (tests/data/format1/README.md), load into today's
families, keep their versions and score as they did (to float32 rounding: kernels differ by
CPU, 1e-5 relative on an AMD EPYC against the machine that wrote them; the fixed-camera family's
as it has since its per-pixel spread stopped cancelling near-equal sums, README); training them
again gives the same weights (the families draw their random numbers in the same order as before)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.detector import Checkpoint, CheckpointError, Detector
from inspector.training import TrainOptions, train

FORMAT1 = Path(__file__).resolve().parents[1] / "data" / "format1"
EXPECTED = json.loads((FORMAT1 / "expected.json").read_text())
LOADS_AS = {
    "vae": "vae",
    "anogan": "anogan",
    "vaegan": "vaegan",
    "vaegan-standardised": "vaegan-z",
    "vaegan-plus": "vaegan+",
}
RENAMED = {"vaegan-standardised": {"vaegan": "vaegan-z", "vaegan-attn": "vaegan-attn-z"}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_format1_checkpoint_loads_as_its_family_and_scores_as_it_did(name: str) -> None:
    expected, renamed = EXPECTED[name], RENAMED.get(name, {})
    checkpoint = Checkpoint.load(FORMAT1 / f"{name}.pt")
    assert checkpoint.family.name == LOADS_AS[name]
    assert checkpoint.version == expected["version"]  # its results and thresholds stay attached
    assert checkpoint.thresholds == {renamed.get(m, m): t for m, t in expected["thresholds"].items()}
    frames = np.load(FORMAT1 / "test.npy")
    maps = np.load(FORMAT1 / f"{name}.maps.npz")
    for old, scores in expected["methods"].items():
        detections = Detector(checkpoint, renamed.get(old, old), device="cpu").score_arrays(frames)
        np.testing.assert_allclose([d.score for d in detections], scores, rtol=1e-4, atol=1e-5)
        for kind in ("anomaly_map", "reconstruction", "attention"):
            if kind == "attention" and f"{old}.attention" not in maps:
                continue
            before = maps[f"{old}.{kind}"]
            now = np.stack([getattr(d, kind) for d in detections])
            # Within 1e-5 of the map's own scale: a standardised map (vaegan-z: errors in standard
            # deviations, up to ~45) carries the CPU's rounding of the convolutions (AVX-512 or
            # AVX2 kernels) up to ~1e-4 on pixels whose values are near 0.
            scale = max(1.0, float(np.abs(before).max()))
            np.testing.assert_allclose(now, before, rtol=1e-4, atol=1e-5 * scale)


def test_a_standardised_checkpoint_is_not_scored_under_the_papers_method_names() -> None:
    """Its old method names meant another computation than the paper's: refused, with its own."""
    with pytest.raises(CheckpointError, match="'vaegan-attn' needs a 'vaegan' model.*vaegan-attn-z"):
        Detector.load(FORMAT1 / "vaegan-standardised.pt", method="vaegan-attn", device="cpu")


def test_a_format1_checkpoint_saved_again_is_of_today_s_format(tmp_path: Path) -> None:
    checkpoint = Checkpoint.load(FORMAT1 / "vaegan-standardised.pt")
    checkpoint.save(tmp_path / "again.pt")
    again = Checkpoint.load(tmp_path / "again.pt")
    assert again.format1_config is None and again.version.startswith("vaegan-z-")
    assert again.model_config == checkpoint.model_config and again.thresholds == checkpoint.thresholds
    frames = np.load(FORMAT1 / "test.npy")
    before = Detector(checkpoint, "vaegan-attn-z", device="cpu").score_arrays(frames)
    after = Detector(again, "vaegan-attn-z", device="cpu").score_arrays(frames)
    assert [d.score for d in before] == [d.score for d in after]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_training_gives_the_weights_it_gave(name: str) -> None:
    checkpoint = Checkpoint.load(FORMAT1 / f"{name}.pt")
    options = TrainOptions(**checkpoint.metadata["options"])
    frames = np.load(FORMAT1 / "train.npy")
    retrained = train(frames, checkpoint.model_config, checkpoint.frame_spec, options)
    assert retrained.state_dict.keys() == checkpoint.state_dict.keys()
    for key, value in checkpoint.state_dict.items():
        torch.testing.assert_close(retrained.state_dict[key], value, rtol=1e-4, atol=1e-5, msg=key)
    # The fixed-camera family's thresholds were set with its per-pixel spread's old rounding
    # (E[m²] − E[m]², standardise.py): 1e-4 from today's.
    rel = 1e-3 if name == "vaegan-standardised" else 1e-4
    assert retrained.thresholds == pytest.approx(checkpoint.thresholds, rel=rel, abs=1e-5)
