"""The label-free choice of `inspector train` with no method: synthetic anomalies, the data-kind
gate, the candidates' validation, and what the checkpoint and the command say about it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from inspector import selection
from inspector.cli import main
from inspector.config import FrameSpec
from inspector.detector import Checkpoint, Detector
from inspector.models import make_config
from inspector.selection import auroc, choose, frame_shape, map_choices, map_name, object_share, train_default
from inspector.synthetic import CHANGED, KINDS, anomalies, boxes, masks
from inspector.training import TrainOptions

from .conftest import TINY_SIZE, blob_frames
from .models.test_memory import ELONGATED, striped_frames

QUICK = TrainOptions(epochs=1, device="cpu")


def test_frame_shape_keeps_the_aspect_within_the_pixel_budget() -> None:
    assert frame_shape([(84, 84), (84, 84)]) == (84, 84)  # never enlarged
    rows, columns = frame_shape([(500, 1250), (510, 1240), (490, 1260)])
    assert rows * columns <= selection.PIXELS and columns / rows == pytest.approx(2.5, rel=0.01)
    assert frame_shape([(10, 4000)])[0] == selection.MIN_SIDE


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 10, 200).astype(float) + labels
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    with pytest.raises(ValueError):
        auroc(np.zeros(3), np.arange(3))


def test_every_synthetic_anomaly_changes_the_frame_on_its_object() -> None:
    normals, donors = blob_frames(4), blob_frames(4, seed=1)
    frames, kinds = anomalies(normals, donors, seed=3)
    assert len(frames) == 4 * len(KINDS) and sorted(set(kinds)) == sorted(KINDS)
    assert frames.min() >= 0 and frames.max() <= 1 and frames.dtype == np.float32
    changed = np.abs(frames - np.tile(normals, (len(KINDS), 1, 1, 1))).reshape(len(frames), -1).max(axis=1)
    assert (changed > 0.02).mean() >= 0.9  # a paste from a like place may change little
    again, _ = anomalies(normals, donors, seed=3)
    np.testing.assert_array_equal(again, frames)
    defects = masks(normals, frames)
    assert defects.shape == (len(frames), TINY_SIZE, TINY_SIZE) and (defects.mean(axis=(1, 2)) < 0.5).all()
    np.testing.assert_array_equal(defects.reshape(len(frames), -1).any(axis=1), changed > CHANGED)


def large_object_frames(n: int, background: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A figure whose box spans most of the frame (a person before a depth camera: a tall body
    and a raised arm) on an empty background, or on ``background`` (H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :64]
    frames = np.empty((n, 1, 48, 64), np.float32)
    for i in range(n):
        dx = rng.uniform(-8, 8)
        body = (np.abs(xx - 40 - dx) < 10) & (yy > 12)
        arm = (np.abs(xx - 12 - dx) < 3) & (yy > 4) & (yy < 40)
        figure = 0.6 * (body | arm)
        base = np.zeros((48, 64)) if background is None else background
        frames[i, 0] = np.clip(np.where(body | arm, figure, base) + rng.normal(0, 0.02, (48, 64)), 0, 1)
    return frames


def filling_object_frames(n: int, seed: int = 0) -> np.ndarray:
    """A soft-edged ring filling over half the frame (an 8×8 digit enlarged to the canvas): the
    frame's median is the object's level, not the background's, and its edge is wide."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    frames = np.empty((n, 1, 48, 48), np.float32)
    for i in range(n):
        r = np.hypot(yy - 24 - rng.uniform(-2, 2), xx - 24 - rng.uniform(-2, 2))
        ring = np.clip(1 - np.abs(r - 14) / 9, 0, 1)
        frames[i, 0] = np.clip(0.8 * ring + rng.normal(0, 0.02, (48, 48)), 0, 1)
    return frames


def test_the_gate_tells_objects_from_surfaces() -> None:
    assert object_share(blob_frames(20)) == 1.0
    assert object_share(striped_frames(20)) == 0.0
    # A large object: its box covers most of the frame, but nothing else is there.
    assert object_share(large_object_frames(10)) == 1.0
    assert object_share(filling_object_frames(10)) == 1.0  # the background's level is the border's
    # (a grating of period 16: one of period 8 is flat after the σ 2 blur, as fine noise is)
    grating = 0.15 + 0.12 * np.sin(2 * np.pi * np.arange(64) / 16)[None, :].repeat(48, axis=0)
    assert object_share(large_object_frames(10, background=grating)) == 0.0  # on a texture: a scene


def test_small_sets_hold_out_each_frame_in_turn() -> None:
    rounds = selection.validation_rounds(6, QUICK)
    assert len(rounds) == 6 and sorted(int(held[0]) for _, held in rounds) == list(range(6))
    assert all(len(seen) == 5 and held[0] not in seen for seen, held in rounds)
    # A medium set: each frame held out once, in FOLDS rounds (the split would hold out 2 to 9).
    rounds = selection.validation_rounds(selection.SMALL_SET, QUICK)
    assert len(rounds) == selection.FOLDS
    assert sorted(np.concatenate([held for _, held in rounds]).tolist()) == list(range(selection.SMALL_SET))
    assert all(
        len(seen) + len(held) == selection.SMALL_SET and not set(seen) & set(held) for seen, held in rounds
    )
    (seen, held), *more = selection.validation_rounds(100, QUICK)  # a large one: training's split
    assert not more and len(held) == 10 and len(seen) == 90
    choice = choose(large_object_frames(6), FrameSpec(image_size=48, width=64), QUICK)
    assert choice.kind == "objects" and choice.method in ("glimpse-mean", "glimpse-pixels", "glimpse-max")


def test_objects_at_varying_places_get_only_glimpse_candidates() -> None:
    notes: list[str] = []
    choice = choose(blob_frames(30, jitter=8), FrameSpec(image_size=TINY_SIZE), QUICK, notes.append)
    assert choice.kind == "objects" and {c["family"] for c in choice.candidates} == {"glimpse-memory"}
    assert choice.method in ("glimpse-mean", "glimpse-pixels", "glimpse-max") and 0.5 < choice.estimate <= 1
    assert "objects at varying places" in notes[0] and any("validation ROC-AUC" in line for line in notes)


def test_a_part_at_a_fixed_place_lets_every_family_compete() -> None:
    """A part that stays where the fixture holds it is judged as a surface is (its anomalies are
    local defects, as the synthetic ones are); objects that move are not, nor are surfaces objects."""

    def spread(frames: np.ndarray) -> tuple[float, float]:
        return selection.centre_spread(boxes(frames), frames.shape[-2:])

    def kind(frames: np.ndarray, share: float) -> str:
        found = boxes(frames) if share >= selection.OBJECT_SHARE else None
        return selection.data_kind(share, found, frames.shape[-2:])[0]

    rows, columns = spread(blob_frames(30))  # moved by up to 2 of 32 px
    assert max(rows, columns) < selection.FIXED_PLACE
    assert min(spread(blob_frames(30, jitter=8))) > selection.FIXED_PLACE
    assert kind(blob_frames(30), 1.0) == "part"
    assert kind(blob_frames(30, jitter=8), 1.0) == "objects"
    assert kind(striped_frames(30), 0.0) == "any"
    # A part off the frame's centre, with a few frames where it was not found (their box: the whole
    # frame, whose centre is elsewhere): those say nothing of where it stands.
    off_centre = np.roll(blob_frames(30), (-8, -8), axis=(2, 3))
    off_centre[::6] = np.random.default_rng(0).normal(0.02, 0.01, off_centre[::6].shape).clip(0, 1)
    assert max(spread(off_centre)) < selection.FIXED_PLACE
    notes: list[str] = []
    choice = choose(blob_frames(30), FrameSpec(image_size=TINY_SIZE), QUICK, notes.append)
    assert choice.kind == "part" and "one part at a fixed place" in notes[0]
    assert {c["family"] for c in choice.candidates} == {"glimpse-memory", "patch-memory"}


def test_objects_darker_than_their_background_are_looked_for_as_such() -> None:
    """Dark discs on a light field (silhouettes before a light): too few frames show a brighter
    object and enough a darker one, so the glimpse family looks for darker ones; bright objects and
    surfaces stay as they were."""
    dark = 1 - blob_frames(30, jitter=8)
    assert selection.objects_and_polarity(blob_frames(30, jitter=8)) == (1.0, 1.0)
    assert selection.objects_and_polarity(dark) == (1.0, -1.0)
    assert selection.objects_and_polarity(striped_frames(30))[1] == 1.0
    notes: list[str] = []
    choice = choose(dark, FrameSpec(image_size=TINY_SIZE), QUICK, notes.append)
    assert choice.kind == "objects" and "darker than a plain background" in notes[0]
    assert choice.config.glimpse_polarity == -1.0 and "glimpse_polarity -1.0" in choice.candidate


def test_objects_larger_than_the_glimpse_are_also_tried_at_their_own_size() -> None:
    """A part that fills 120 of a frame's 200 px is shown to the backbone at its own resolution
    (a glimpse of 120 / (20/28) = 168 px) beside the default 112 px; small objects and surfaces
    keep the default candidates."""

    def squares(side: int) -> np.ndarray:
        frames = np.full((selection.SMALL_SET, 1, 200, 200), 0.05, np.float32)
        frames[:, :, 40 : 40 + side, 50 : 50 + side] = 0.6
        return frames

    assert selection.glimpse_side(boxes(squares(120))) == 168
    assert selection.candidates("objects", boxes(squares(120))) == [
        ("glimpse-memory", {}),
        ("glimpse-memory", {"backbone_size": 168}),
    ]
    assert selection.candidates("objects", boxes(squares(40))) == [("glimpse-memory", {})]
    assert selection.candidates("part", boxes(squares(120))) == [
        ("glimpse-memory", {}),
        ("patch-memory", {}),
        ("glimpse-memory", {"backbone_size": 168}),
    ]
    assert selection.candidates("any", None) == [("glimpse-memory", {}), ("patch-memory", {})]
    # A part at a fixed place; half of the 20 frames held out, one round (not five): the candidates
    # are under test here, and five rounds of 200-px frames would take a minute.
    one_round = TrainOptions(epochs=1, device="cpu", val_fraction=0.5)
    choice = choose(squares(120), FrameSpec(image_size=200), one_round)
    assert [c["family"] for c in choice.candidates if c["method"] == "glimpse-max"] == [
        "glimpse-memory",
        "glimpse-memory (backbone_size 168)",
    ]
    assert choice.kind == "part" and choice.candidate in {c["family"] for c in choice.candidates}
    if choice.candidate.startswith("glimpse-memory"):
        assert choice.config.backbone_size == (168 if "168" in choice.candidate else 112)


def test_surfaces_get_every_candidate_and_the_checkpoint_keeps_the_choice() -> None:
    checkpoint = train_default(striped_frames(30), ELONGATED, QUICK)
    chosen = checkpoint.metadata["selection"]
    assert chosen["kind"] == "any"
    assert {c["family"] for c in chosen["candidates"]} == {"glimpse-memory", "patch-memory"}
    # 30 frames, validated in folds: the first listed within one standard error of the best
    (picked,) = [
        c
        for c in chosen["candidates"]
        if (c["family"], c["method"]) == (chosen["candidate"], checkpoint.metadata["method"])
    ]
    assert checkpoint.family.name == chosen["candidate"] and chosen["estimate"] == picked["validation_auroc"]
    assert Detector(checkpoint, device="cpu").method == picked["method"]
    # The map: the σ, and the measure (as it is, or against each cell's normal distances: 24 frames
    # remembered in each round are enough to measure them), whose maps ranked the synthetic
    # defects' pixels highest.
    figures = chosen["map_smoothing"]
    assert set(figures) == {map_name(*choice) for choice in map_choices(True)}
    config = checkpoint.model_config
    assert map_name(config.map_smooth, config.map_z) == max(figures, key=figures.get)


def test_a_method_weighing_by_the_spread_competes_only_with_enough_held_out_frames() -> None:
    def methods(frames: int) -> set[str]:
        return {c["method"] for c in choose(striped_frames(frames), ELONGATED, QUICK).candidates}

    assert "patch-max-or-mean" not in methods(60)  # training's split holds out 6, each of 5 rounds 12
    assert "patch-max-or-mean" in methods(100)  # 10 held out


def test_a_small_sets_choice_takes_the_first_within_one_standard_error() -> None:
    rng = np.random.default_rng(0)
    labels = [np.array([0, 1, 1, 1]) for _ in range(8)]
    good = [np.array([0.0, *rng.uniform(0.5, 1.5, 3)]) for _ in labels]
    noisy = [np.array([1.0 if i == 0 else 0.0, *good[i][1:]]) for i in range(8)]  # one normal frame high
    useless = [rng.uniform(0, 1, 4) for _ in labels]
    estimates = np.array([auroc(np.concatenate(labels), np.concatenate(c)) for c in (noisy, good, useless)])
    close = selection.within_one_error(labels, [noisy, good, useless], estimates, seed=0)
    assert estimates[1] == estimates.max() and close.tolist() == [True, True, False]


def test_a_small_set_picks_the_candidate_then_its_method() -> None:
    """A candidate listed later takes the pick only where its best clearly beats the first's; the
    first keeps its own first method within one error, not a later one the newcomer's best moved."""
    rng = np.random.default_rng(1)
    labels = [np.array([0, 1, 1, 1]) for _ in range(8)]

    def scored(gap: float, noise: float) -> list[np.ndarray]:
        return [np.array([0.0, *(gap + rng.normal(0, noise, 3))]) for _ in labels]

    config = make_config("glimpse-memory", {})
    per_round = [scored(0.3, 1.0), scored(0.6, 1.0), scored(0.7, 1.0)]
    names = [("glimpse-memory", "glimpse-mean"), ("glimpse-memory", "glimpse-max"), ("wider", "glimpse-max")]
    pooled = [auroc(np.concatenate(labels), np.concatenate(r)) for r in per_round]
    results = [(a, name, method, config) for a, (name, method) in zip(pooled, names, strict=True)]
    assert selection.small_set_pick(results, labels, per_round, seed=0) == 0  # all within one error
    clear = [*per_round[:2], scored(5.0, 0.1)]
    pooled = [auroc(np.concatenate(labels), np.concatenate(r)) for r in clear]
    results = [(a, name, method, config) for a, (name, method) in zip(pooled, names, strict=True)]
    assert selection.small_set_pick(results, labels, clear, seed=0) == 2  # clearly better: it wins


def test_near_ties_are_averaged_and_a_clear_best_stands_alone() -> None:
    """The best family's methods within one standard error of the best become its ensemble, best
    first, with the estimate of their average; a best the others trail clearly stands alone."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [60, 360])
    signal = rng.normal(0, 1, len(labels)) + 1.2 * labels
    scores = {
        "patch-max-inner": signal + rng.normal(0, 0.3, len(labels)),
        "patch-max-or-mean": 10 * (signal + rng.normal(0, 0.3, len(labels))),  # another unit, same ranks
        "patch-max": signal + rng.normal(0, 2.0, len(labels)),
    }
    config = make_config("patch-memory", {})

    def results(*methods: str) -> list:
        return [(auroc(labels, scores[m]), "patch-memory", m, config) for m in methods]

    tied, notes = results("patch-max", "patch-max-or-mean", "patch-max-inner"), []
    chosen = selection.near_ties_averaged(tied, [scores[r[2]] for r in tied], labels, 0, notes.append)
    assert chosen is not None and chosen == tied[-1] and "patch-ensemble of" in notes[0]
    first, second = sorted(("patch-max-or-mean", "patch-max-inner"), key=lambda m: -auroc(labels, scores[m]))
    assert chosen[2] == "patch-ensemble" and chosen[3].ensemble == (first, second)
    assert abs(chosen[0] - auroc(labels, scores[first])) < 0.02
    alone = results("patch-max", "patch-max-inner")
    assert selection.near_ties_averaged(alone, [scores[r[2]] for r in alone], labels, 0, notes.append) is None
    assert len(alone) == 2 and len(notes) == 1


def _write(folder: Path, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), (frame[0] * 255).astype(np.uint8))


def test_train_without_a_method_chooses_prints_and_warns(tmp_path: Path, monkeypatch) -> None:
    """Elongated files keep their aspect; the estimate is printed, and warned about when low."""
    _write(tmp_path / "normal", np.repeat(np.repeat(striped_frames(12), 2, axis=2), 2, axis=3))  # 64×192
    args = ["train", "--data", str(tmp_path / "normal"), "--out", str(tmp_path / "m.pt"), "--epochs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "chose" in result.output and "validation ROC-AUC" in result.output
    assert "anomaly map σ" in result.output  # the map's choice (smoothing, measure), on the same validation
    checkpoint = Checkpoint.load(tmp_path / "m.pt")
    assert checkpoint.frame_spec.shape == (64, 192) and "selection" in checkpoint.metadata
    monkeypatch.setattr(selection, "WARN_BELOW", 1.01)
    warned = CliRunner().invoke(main, args)
    assert warned.exit_code == 0 and "warning: the validation estimate" in warned.output
    alone = CliRunner().invoke(main, [*args, "--model-config", str(tmp_path / "m.pt")])
    assert alone.exit_code != 0 and "--model-config needs --method" in alone.output


def test_a_dark_objects_checkpoint_keeps_its_polarity(tmp_path: Path) -> None:
    """`inspector train` on dark discs: the checkpoint's glimpse looks for darker objects when
    loaded again, and it scores frames with them."""
    _write(tmp_path / "normal", 1 - blob_frames(24, jitter=8))
    args = ["train", "--data", str(tmp_path / "normal"), "--out", str(tmp_path / "m.pt"), "--epochs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "darker than a plain background" in result.output
    checkpoint = Checkpoint.load(tmp_path / "m.pt")
    assert checkpoint.model_config.glimpse_polarity == -1.0
    detections = Detector(checkpoint, device="cpu").score_arrays(1 - blob_frames(3, jitter=8, seed=5))
    assert len(detections) == 3 and all(np.isfinite(d.score) for d in detections)
