"""`inspector export` and `inspector retrain` as typed: reviewed frames out as files and a manifest,
and a candidate trained on the live model's frames plus those reviewed normal, never anomalies."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from inspector.cli import main
from inspector.config import FrameSpec, Settings
from inspector.detector import Checkpoint, CheckpointError, Detector
from inspector.frames import read_frame
from inspector.pipeline.dataset import LabelledFile
from inspector.pipeline.retrain import CHOOSE_FROM, choose_method, held_out, retrain
from inspector.pipeline.watcher import Watcher
from inspector.store import review
from inspector.store.db import session_scope
from inspector.store.models import Frame, Result, utcnow
from inspector.training import TrainOptions, load_training_frames, train
from tests.conftest import TINY_SIZE, blob_frames, tiny_config
from tests.models.test_memory import ELONGATED, TINY_MEMORY, striped_frames
from tests.pipeline.conftest import settings_env, write_frames


def _anomalous(folder: Path, n: int) -> list[Path]:
    """Blob frames with a bright bar across them."""
    paths = []
    for i, frame in enumerate(blob_frames(n, seed=11)):
        image = (frame[0] * 255).astype(np.uint8)
        image[4 + i : 8 + i, 2:30] = 255
        path = folder / f"bad{i:02d}.png"
        assert cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture
def reviewed(tmp_path: Path, embedded: Settings) -> Settings:
    """A live model trained on 30 recorded frames; a stream of 16 normal frames (one of them a copy
    of a training frame), 6 anomalous ones and a training frame reviewed anomalous, scored with a
    threshold that flags everything; every frame reviewed by its truth."""
    originals = write_frames(tmp_path / "train", 30, seed=1, prefix="t")
    frames, records, _ = load_training_frames(str(tmp_path / "train"), FrameSpec(image_size=TINY_SIZE))
    live = train(
        frames,
        tiny_config(),
        FrameSpec(image_size=TINY_SIZE),
        TrainOptions(epochs=1, device="cpu"),
        records=records,
    )
    live.thresholds = {method: -1e9 for method in live.thresholds}  # every frame flagged
    live.metadata["method"] = "vaegan"  # as training's label-free choice records it: not the family's default
    live.save(tmp_path / "live.pt")
    embedded.model_path = str(tmp_path / "live.pt")

    incoming = tmp_path / "incoming"
    write_frames(incoming, 15, seed=2, prefix="n")
    shutil.copy(originals[0], incoming / "copy-of-t000.png")  # archived under its hash
    shutil.copy(originals[1], incoming / "copy-of-t001.png")  # reviewed anomalous below
    _anomalous(incoming, 6)
    Watcher(incoming, embedded).run_once()
    originals[0].unlink()  # moved away: retrain finds it in the archive by its hash
    originals[2].unlink()  # gone for good
    with session_scope(embedded.db_url) as session:
        for frame in session.scalars(select(Frame)):
            bad = "bad" in frame.path or "t001" in frame.path
            review.add_review(session, frame.id, "anomaly" if bad else "normal", "ada", "by eye")
    return embedded


def test_export_writes_the_reviewed_frames_and_a_manifest(tmp_path: Path, reviewed: Settings) -> None:
    with session_scope(reviewed.db_url) as session:  # one frame's file pruned by retention
        session.execute(update(Frame).where(Frame.path.like("%n000.png")).values(pruned_at=utcnow()))
    out = tmp_path / "export"
    env = settings_env(reviewed)
    result = CliRunner().invoke(main, ["export", "--reviewed", "--since", "1h", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert "exported 22 of 23 frames" in result.output and "7 anomaly, 15 normal" in result.output
    assert "pruned at" in result.output  # the frame without its file is named, with the reason

    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(rows) == 23
    assert {"path", "source", "label", "score", "model_version", "reviewer"} <= set(rows[0])
    described = json.loads((out / "manifest.json").read_text())
    assert described["reviewed_only"] is True and len(described["frames"]) == 23
    for row in rows:
        if row["missing"]:
            assert row["path"] == "" and "pruned" in row["missing"]
            continue
        data = (out / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["content_hash"]
        assert row["path"].startswith(f"frames/{row['label']}/") and row["reviewer"] == "ada"
    # Only reviews since a later time: none; and an export never mixes into an old one.
    later = (utcnow() + timedelta(hours=1)).isoformat(timespec="minutes")
    empty = CliRunner().invoke(main, ["export", "--since", later, "--out", str(tmp_path / "e2")], env=env)
    assert "exported 0 of 0 frames" in empty.output
    again = CliRunner().invoke(main, ["export", "--out", str(out)], env=env)
    assert again.exit_code == 1 and "not empty" in again.output
    every = CliRunner().invoke(main, ["export", "--all", "--out", str(tmp_path / "all")], env=env)
    assert "exported 22 of 23 frames" in every.output


def test_retrain_learns_from_reviewed_normals_never_from_anomalies(
    tmp_path: Path, reviewed: Settings
) -> None:
    env = settings_env(reviewed)
    runner = CliRunner()
    live = Checkpoint.load(reviewed.model_path)
    args = ["retrain", "--from", reviewed.model_path, "--epochs", "1"]
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "cand.pt")], env=env)
    assert result.exit_code == 0, result.output

    with session_scope(reviewed.db_url) as session:
        labels = {frame.content_hash: frame.reviews[-1].label for frame in session.scalars(select(Frame))}
        assert session.scalar(select(Result.id).where(Result.shadow.is_(True))) is None
    anomalies = {h for h, label in labels.items() if label == "anomaly"}
    normals = {h for h, label in labels.items() if label == "normal"}
    original = {r["sha256"] for r in live.metadata["training_frames"]}
    trained_on = {r["sha256"] for r in Checkpoint.load(tmp_path / "cand.pt").metadata["training_frames"]}
    assert not trained_on & anomalies  # t001 was a training frame, reviewed anomalous since: dropped
    apart = held_out(normals - original)
    new = (normals - original) - apart
    assert (
        trained_on
        == (original - anomalies - {r["sha256"] for r in live.metadata["training_frames"][2:3]}) | new
    )
    held = sorted(apart)
    assert (
        len(held) == round(len(normals - original) * 0.2) and held == sorted(normals - original)[: len(held)]
    )
    assert "original normal frames: 28 of 30 (1 missing, 1 since reviewed as anomalies)" in result.output
    assert f"reviewed normal frames trained on: {len(new)}" in result.output
    assert f"held out: {len(held)} reviewed normal, 7 reviewed anomalous frames" in result.output
    assert "label-free validation estimate (ROC-AUC, the held-out normals against synthetic" in result.output
    assert "at the live threshold's recall on the held-out anomalies (100.0%)" in result.output
    candidate = Checkpoint.load(tmp_path / "cand.pt")
    assert candidate.metadata["retrained_from"] == live.version
    assert candidate.default_method == live.default_method == "vaegan"  # the chosen method carries over
    assert candidate.model_config == live.model_config and candidate.frame_spec == live.frame_spec

    # From an export instead of the database: the same frames, in the same order, the same model.
    exported = tmp_path / "export"
    assert runner.invoke(main, ["export", "--out", str(exported)], env=env).exit_code == 0
    result = runner.invoke(
        main, [*args, "--reviewed-from", str(exported), "--out", str(tmp_path / "c2.pt")], env=env
    )
    assert result.exit_code == 0, result.output
    assert Checkpoint.load(tmp_path / "c2.pt").version == candidate.version


def test_retrain_needs_a_checkpoint_that_records_its_frames(
    tmp_path: Path, embedded: Settings, tiny_checkpoint: Path
) -> None:
    result = CliRunner().invoke(
        main,
        ["retrain", "--from", str(tiny_checkpoint), "--out", str(tmp_path / "c.pt")],
        env=settings_env(embedded),
    )
    assert result.exit_code == 1 and "records no training frames" in result.output


def _write(folder: Path, frames: np.ndarray, prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{i:02d}.png" for i in range(len(frames))]
    for path, frame in zip(paths, frames, strict=True):
        assert cv2.imwrite(str(path), np.round(frame[0] * 255).astype(np.uint8))
    return paths


def _labelled(paths: list[Path], label: str) -> list[LabelledFile]:
    return [LabelledFile(hashlib.sha256(p.read_bytes()).hexdigest(), label, "cam", p) for p in paths]


def _live_memory(folder: Path, method: str | None = None) -> tuple[Checkpoint, list[dict]]:
    """A tiny patch memory trained on 20 recorded gratings, saved as ``folder/live.pt`` with
    ``method`` recorded as the label-free choice would; the checkpoint and its frame records."""
    _write(folder / "train", striped_frames(20), "t")
    frames, records, _ = load_training_frames(str(folder / "train"), ELONGATED)
    config = tiny_config("patch-memory", **TINY_MEMORY)
    live = train(frames, config, ELONGATED, TrainOptions(epochs=1, device="cpu"), records=records)
    if method:
        live.metadata["method"] = method
    live.save(folder / "live.pt")
    return live, records


def test_retrain_puts_reviewed_normals_into_a_memory_models_memory(
    tmp_path: Path, embedded: Settings
) -> None:
    """A patch memory trained on plain gratings flags gratings with a dark mark; operators review
    ten of them as normal (and two with a bright bar as anomalies). The candidate keeps the live
    model's family, frames and chosen method, trains on its frames plus the reviewed normals
    but the held-out fifth, and remembers the mark: the held-out marked frames, which it never
    saw, score among plain gratings, where the live model put them above every one."""
    live, records = _live_memory(tmp_path, "patch-max-or-mean")  # not the family's default
    marked = _labelled(_write(tmp_path / "queue", striped_frames(10, seed=2, defect=True), "m"), "normal")
    barred = striped_frames(2, seed=3)
    barred[:, 0, 4:8, 10:80] = 1.0
    bad = _labelled(_write(tmp_path / "queue", barred, "b"), "anomaly")

    report = retrain(embedded, tmp_path / "live.pt", tmp_path / "cand.pt", [*marked, *bad])
    candidate = Checkpoint.load(tmp_path / "cand.pt")
    assert candidate.model_config == live.model_config and candidate.frame_spec == live.frame_spec
    assert candidate.default_method == "patch-max-or-mean" == report.method
    apart = held_out({item.content_hash for item in marked})
    assert len(apart) == 2
    trained_on = {r["sha256"] for r in candidate.metadata["training_frames"]}
    new = {item.content_hash for item in marked} - apart
    assert trained_on == {r["sha256"] for r in records} | new  # never the anomalies, never the held out
    assert (
        report.reviewed_trained == 8 and report.comparison.normals == 2 and report.comparison.anomalies == 2
    )
    live_bank, candidate_bank = report.banks  # the live memory's coreset kept, the marks added
    assert candidate_bank > live_bank == len(live.state_dict["memory.bank"])
    assert f"memory: live {live_bank} patches, candidate {candidate_bank}" in "\n".join(report.lines())

    plain = striped_frames(6, seed=4)
    unseen = np.stack(
        [read_frame(item.file, ELONGATED).pixels for item in marked if item.content_hash in apart]
    )
    for name, checkpoint in (("live", live), ("candidate", candidate)):
        detector = Detector(checkpoint, method="patch-max", device="cpu")
        normal, held = (np.array([r.score for r in detector.score_arrays(x)]) for x in (plain, unseen))
        if name == "live":
            assert held.min() > normal.max()  # the mark: a false alarm for the live model
        else:
            assert held.max() < normal.max()  # remembered: it scores as a plain grating does

    asked = retrain(embedded, tmp_path / "live.pt", tmp_path / "c2.pt", marked, method="patch-max")
    assert Checkpoint.load(tmp_path / "c2.pt").default_method == "patch-max" == asked.method
    with pytest.raises(CheckpointError, match="needs a 'vaegan' model"):  # before any training
        retrain(embedded, tmp_path / "live.pt", tmp_path / "c3.pt", marked, method="vaegan")
    assert not (tmp_path / "c3.pt").exists()


def test_retrain_holds_out_what_the_live_model_did_and_remembers_reviewed_normals_whole(
    tmp_path: Path, embedded: Settings
) -> None:
    """The candidate's split is the live model's (its held-out original frames set the threshold;
    none of the reviewed normals is held out), the reviewed normals are recorded as remembered,
    and the next round, from the candidate, keeps both: its frames' flags carry over."""
    _live_memory(tmp_path)
    marked = _labelled(_write(tmp_path / "queue", striped_frames(10, seed=2, defect=True), "m"), "normal")
    retrain(embedded, tmp_path / "live.pt", tmp_path / "cand.pt", marked)

    def flags(path: Path) -> dict[str, tuple[bool, bool]]:
        frames = Checkpoint.load(path).metadata["training_frames"]
        return {r["sha256"]: (r["heldout"], r.get("remembered", False)) for r in frames}

    before, after = flags(tmp_path / "live.pt"), flags(tmp_path / "cand.pt")
    new = {item.content_hash for item in marked} - held_out({item.content_hash for item in marked})
    assert {h: after[h] for h in before} == before and sum(a for a, _ in before.values()) == 2
    assert {h: after[h] for h in new} == dict.fromkeys(new, (False, True))
    again = _labelled(_write(tmp_path / "queue2", striped_frames(5, seed=6), "p"), "normal")
    retrain(embedded, tmp_path / "cand.pt", tmp_path / "next.pt", again)
    following = flags(tmp_path / "next.pt")
    assert {h: following[h] for h in after} == after
    newer = {item.content_hash for item in again} - held_out({item.content_hash for item in again})
    assert {h: following[h] for h in newer} == dict.fromkeys(newer, (False, True))


def test_retrain_lets_the_operators_labels_choose_the_scoring_method(
    tmp_path: Path, embedded: Settings
) -> None:
    """With CHOOSE_FROM held-out reviewed normal and anomalous frames, the candidate scores with the
    family's method that ranks them best where it beats the live model's by more than one standard
    error; the checkpoint and the report say so. Fewer, or a method asked for: no choice."""
    live, _ = _live_memory(tmp_path, "patch-max")
    marked = _labelled(_write(tmp_path / "queue", striped_frames(50, seed=2, defect=True), "m"), "normal")
    barred = striped_frames(CHOOSE_FROM, seed=3)
    barred[:, 0, 4:8, 10:80] = 1.0
    bad = _labelled(_write(tmp_path / "queue", barred, "b"), "anomaly")

    report = retrain(embedded, tmp_path / "live.pt", tmp_path / "cand.pt", [*marked, *bad])
    choice = report.method_choice
    assert choice is not None and choice.live == "patch-max"
    assert set(choice.auroc) == set(live.family.methods)
    best = max(choice.auroc, key=choice.auroc.get)
    lead = choice.auroc[best] - choice.auroc["patch-max"]
    assert choice.chosen == (best if lead > choice.error else "patch-max")
    candidate = Checkpoint.load(tmp_path / "cand.pt")
    assert candidate.default_method == choice.chosen == report.method
    assert candidate.metadata["method_choice"]["auroc"] == choice.auroc
    assert "scoring method, by the operators' labels" in "\n".join(report.lines())
    chosen_auroc = choice.auroc[choice.chosen]
    assert abs(report.comparison.auroc_candidate - chosen_auroc) < 1e-3  # the same frames, two ways
    assert "ROC-AUC by the reviews" in "\n".join(report.lines())

    asked = retrain(embedded, tmp_path / "live.pt", tmp_path / "c2.pt", [*marked, *bad], method="patch-mean")
    assert asked.method_choice is None and asked.method == "patch-mean"
    few = retrain(embedded, tmp_path / "live.pt", tmp_path / "c3.pt", [*marked, *bad[:-1]])
    assert few.method_choice is None and few.method == "patch-max"


@pytest.mark.parametrize(("lead", "chosen"), [(True, "patch-mean"), (False, "patch-max")])
def test_the_operators_labels_switch_methods_only_on_a_clear_lead(lead: bool, chosen: str) -> None:
    """The live model's method stays unless another ranks the reviewed frames better by more than
    one standard error: a perfect ranking against a poor one switches, a noisy copy does not."""
    anomalous = np.repeat([False, True], [30, 30])
    rng = np.random.default_rng(0)
    live = np.where(anomalous, rng.normal(1.0, 1.0, 60), rng.normal(0.0, 1.0, 60))
    noisy = live + np.random.default_rng(5).normal(0.0, 0.2, 60)  # ranks them a little better here
    other = anomalous * 5.0 if lead else noisy
    scores = {"patch-max": live, "patch-mean": other, "patch-max-inner": live - 1, "patch-max-or-mean": live}
    choice = choose_method(scores, anomalous, "patch-max")
    assert choice is not None and choice.chosen == chosen
    assert choice.auroc["patch-mean"] > choice.auroc["patch-max"]  # both: the other leads
    fewer = np.r_[30:60, 0 : CHOOSE_FROM - 1]  # every anomalous frame, too few normal ones
    assert choose_method({m: s[fewer] for m, s in scores.items()}, anomalous[fewer], "patch-max") is None
