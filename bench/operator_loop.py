"""The operator loop on the magnetic-tile split: reviewed false alarms make the next model, tried in
shadow beside the live one, compared, promoted. ``python -m bench.operator_loop --data DIR``.

Every step is the product's own command, run in this process (click's runner) on one embedded
database, with the data set's labels standing in for the operators:

1. ``inspector train`` model A on a quarter of the protocol's train-normal frames (sorted
   positions 0, 4, 8, …: 159 frames). By default as a user trains: ``inspector train --data DIR
   --out A.pt`` and nothing else, the product's frame settings (the label-free choice picks the
   frame shape, family and method). ``--method vaegan-z`` trains the published magnetic-tile
   budget's vaegan-z instead (128 px, flat-fielded, 12 epochs; ``VAEGAN_Z``): the runs before
   the default path (operator_loop_vaegan_z.md, operator_loop_default_threshold.md,
   operator_loop_with_sample.md).
2. Stream 1 (the other 475 train-normal frames and the even-numbered defect images of each
   class, 198, shuffled) lands in a watched folder: ``inspector watch --once`` scores it with A.
   The plant runs at a fixed recall (``--operate-at``, 90%): the threshold the calibration page
   suggests for it from stream 1's labels is set, ``inspector threshold set`` (its stored
   verdicts judged again).
3. The operators review the review queue: every flagged frame, labelled by the data set
   (a false alarm is labelled normal, a defect anomaly).
4. ``inspector retrain --from A.pt --out B.pt`` (A's frames + the frames reviewed normal, a
   fifth of them held out), ``inspector model register B.pt``: B is the candidate.
5. Stream 2, the evaluation stream (the protocol's 318 test-normal frames and the odd-numbered
   defect images, 194, shuffled; none seen by A or B), is scored by A (live) and by B in shadow.
6. Every stream-2 frame is labelled by the data set (an audit, for measuring only);
   ``inspector model compare`` gives false alarms and misses at matched recall; the same
   figures are computed here at fixed recalls of 90% and 95% from the stored scores.
7. ``inspector model promote`` (B judged at A's operating point, carried over); three more frames
   are scored by B as the live model.

The peer, measured in the same run: the same retraining, but on as many frames as the
operators reviewed drawn at random from stream 1 and labelled by the data set (the normal ones
train; the anomalous ones, with the held-out normals, may choose its scoring method as the
queue's reviews may B's), instead of the queue: does reviewing the false alarms matter, or only
having more labelled frames?

Goal (issue 21): false alarms at fixed recall fall by ≥ 50% after one round, with no drop in
recall. Resumable: each step's output (checkpoints, database, reviews) is kept in ``--work``
and a rerun skips what is done. Results: bench/results/operator_loop.md (and .json), or
operator_loop_vaegan_z.md with ``--method vaegan-z``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.magnetic_tile import CLASSES, protocol_split
from bench.provenance import git_commit, write_report

if TYPE_CHECKING:
    from inspector.detector import Checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
PROGRESS = re.compile(r"\d+%\|")  # tqdm's bars, left out of the report
SOURCE = "tiles"
RECALLS = (0.90, 0.95)
GOAL = 0.5  # false alarms at fixed recall fall by at least this share
# The published magnetic-tile budget's vaegan-z (bench/magnetic_tile.py): 128 px, flat-fielded.
VAEGAN_Z = {
    "model": {
        "width": 32,
        "batch_size": 16,
        "lr": 5e-4,
        "attention_layer": 1,
        "region_blur": 8.0,
        "neighbours": 20,
        "attention_cap": 2.0,
    },
    "frames": {"mode": "grey", "image_size": 128, "flatten": 8.0},
    "epochs": 12,
    "train_args": ["--method", "vaegan-z", "--shift", "2", "--gain", "0.05", "--patience", "5"],
}
METHODS = (None, "vaegan-z")  # model A: the product's default (None), or the published vaegan-z
QUICK_STREAM = 60  # a smoke run of every step in a few minutes: short streams, one epoch ...
QUICK_SIZE = 96  # ... the default path's frames QUICK_SIZE px square (the tiles' 271×241 otherwise) ...
QUICK_VAEGAN_Z = {  # ... and for vaegan-z a tiny model
    "model": {**VAEGAN_Z["model"], "width": 8, "latent_dim": 16, "region_blur": 4.0, "neighbours": 10},
    "frames": {"mode": "grey", "image_size": 64, "flatten": 4.0},
}


def split_streams(data: Path, seed: int = 0, keep: int | None = None) -> dict[str, list[tuple[Path, bool]]]:
    """(file, is a defect) for A's training set and the two streams, each stream shuffled."""
    split = protocol_split(data)
    defects = {name: sorted((data / f"MT_{name}" / "Imgs").glob("*.jpg")) for name in CLASSES}
    even = [p for images in defects.values() for p in images[0::2]]
    odd = [p for images in defects.values() for p in images[1::2]]
    test_normal = [p for p, c in zip(split.test, split.classes, strict=True) if c == "Free"]
    rng = random.Random(seed)
    stream1 = [(p, False) for i, p in enumerate(split.train) if i % 4] + [(p, True) for p in even]
    stream2 = [(p, False) for p in test_normal] + [(p, True) for p in odd]
    rng.shuffle(stream1)
    rng.shuffle(stream2)
    train = [(p, False) for p in split.train[0::4]]
    return {"train": train[:keep], "stream1": stream1[:keep], "stream2": stream2[:keep]}


def _copy(files: Sequence[tuple[Path, bool]], folder: Path) -> None:
    """Copies named by position and class, so they sort in stream order and tell their truth."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (path, _) in enumerate(files):
        shutil.copyfile(path, folder / f"{i:04d}-{path.parent.parent.name}-{path.name}")


class Loop:
    """The work folder, its settings, and the product's commands run against them."""

    def __init__(self, data: Path, work: Path, threads: int, quick: bool, method: str | None = None):
        import torch
        import yaml

        torch.set_num_threads(threads)
        self.data, self.work = data, work
        work.mkdir(parents=True, exist_ok=True)
        self.config = work / "inspector.yaml"
        settings = {
            "data_dir": str(work / "data"),
            "model_path": str(work / "A.pt"),
            "device": "cpu",
            "watch": {"source": SOURCE, "quiet_seconds": 0, "batch_size": 32},
            "metrics": {"enabled": False},
            "registry": {"poll_seconds": 0},
        }
        epochs = ["--epochs", "1"] if quick else []
        # The default path: the command's own defaults, the product's frames (a quick run's at QUICK_SIZE)
        self.train_args = [*epochs, "--image-size", str(QUICK_SIZE)] if quick else []
        if method == "vaegan-z":
            budget = {**VAEGAN_Z, **QUICK_VAEGAN_Z} if quick else VAEGAN_Z
            settings["frames"] = budget["frames"]
            (work / "model.yaml").write_text(yaml.safe_dump({"model": budget["model"]}))
            model = ["--model-config", str(work / "model.yaml")]
            self.train_args = [
                *model,
                *(epochs or ["--epochs", str(VAEGAN_Z["epochs"])]),
                *VAEGAN_Z["train_args"],
            ]
        elif method is not None:
            raise ValueError(f"model A is trained by the default path or as vaegan-z, not {method!r}")
        self.config.write_text(yaml.safe_dump(settings))
        self.streams = split_streams(data, keep=QUICK_STREAM if quick else None)
        self.truth: dict[str, bool] = {}  # content hash -> is a defect
        for files in self.streams.values():
            for path, defect in files:
                self.truth[_sha256(path)] = defect
        self.log: list[str] = []

    @property
    def settings(self):  # noqa: ANN201 - inspector.config.Settings, imported on use
        from inspector.config import load_settings

        return load_settings(self.config, environ={})

    def run(self, *args: str) -> str:
        """An `inspector` command, as typed, in this process; its output is kept for the report."""
        from click.testing import CliRunner

        from inspector.cli import main

        started = time.time()
        result = CliRunner().invoke(main, ["--config", str(self.config), *args], catch_exceptions=False)
        if result.exit_code != 0:
            raise RuntimeError(f"inspector {shlex.join(args)} failed:\n{result.output}")
        line = f"$ inspector {shlex.join(args)}  ({time.time() - started:.0f} s)"
        print(line, flush=True)
        print(result.output, flush=True)
        shown = [text for text in result.output.rstrip().splitlines() if not PROGRESS.search(text)]
        self.log += [line, *shown]
        return result.output

    def review(self, flagged_only: bool, who: str, unflagged_share: float = 0.0) -> tuple[int, int]:
        """Label frames by the data set (those with a live result and no review yet): the review
        queue's (flagged) ones, with ``unflagged_share`` of the others drawn at random (the sample
        calibration asks for), or every one. Returns (labelled normal, labelled anomaly)."""
        from sqlalchemy import select

        from inspector.store import review
        from inspector.store.db import session_scope
        from inspector.store.models import Frame, Result, Review

        counts = [0, 0]
        with session_scope(self.settings.db_url) as session:
            reviewed = select(Review.frame_id)
            stmt = select(Frame.id, Frame.content_hash).join(Result, Result.frame_id == Frame.id)
            stmt = stmt.where(Result.shadow.is_(False), Frame.id.not_in(reviewed))
            rows = session.execute(stmt.add_columns(Result.is_anomaly).order_by(Frame.id)).all()
            draw = random.Random(2)
            chosen = [
                (frame_id, content_hash)
                for frame_id, content_hash, flagged in rows
                if not flagged_only or flagged or draw.random() < unflagged_share
            ]
            for frame_id, content_hash in chosen:
                defect = self.truth[content_hash]
                review.add_review(session, frame_id, "anomaly" if defect else "normal", who)
                counts[defect] += 1
        return counts[0], counts[1]

    def scores(self, version: str, frames: set[str]) -> tuple[np.ndarray, np.ndarray]:
        """A model's stored scores of these frames (content hashes) and their truth."""
        from sqlalchemy import select

        from inspector.store.db import session_scope
        from inspector.store.models import Frame, Result

        with session_scope(self.settings.db_url) as session:
            rows = session.execute(
                select(Frame.content_hash, Result.score)
                .join(Result, Result.frame_id == Frame.id)
                .where(Result.model_version == version, Frame.content_hash.in_(frames))
            ).all()
        return np.array([s for _, s in rows]), np.array([self.truth[h] for h, _ in rows])


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def at_recall(scores: np.ndarray, defect: np.ndarray, recall: float) -> dict:
    """False alarms and misses at the highest threshold whose recall on the defects is ≥ recall."""
    from inspector.pipeline.thresholds import Labelled

    labelled = Labelled.from_arrays(scores, defect)
    point = labelled.operating(labelled.threshold_for_recall(recall))
    return {
        "threshold": point.threshold,
        "recall": point.recall,
        "false_alarms": point.fp,
        "misses": point.fn,
    }


def at_threshold(scores: np.ndarray, defect: np.ndarray, threshold: float) -> dict:
    from inspector.pipeline.thresholds import Labelled

    point = Labelled.from_arrays(scores, defect).operating(threshold)
    return {"threshold": threshold, "recall": point.recall, "false_alarms": point.fp, "misses": point.fn}


def run(
    data: Path,
    work: Path,
    threads: int,
    command: str,
    quick: bool = False,
    operate_at: float = 0.9,
    sample_unflagged: float = 0.0,
    method: str | None = None,
) -> dict:
    from inspector.detector import Checkpoint, Detector
    from inspector.frames import load_frame
    from inspector.pipeline.dataset import LabelledFile
    from inspector.pipeline.retrain import retrain
    from inspector.pipeline.thresholds import Labelled, effective_threshold
    from inspector.store.db import session_scope

    started, cpu = time.time(), time.process_time()
    loop = Loop(data, work, threads, quick, method)
    streams = loop.streams
    out: dict = {"counts": {k: [len(v), sum(d for _, d in v)] for k, v in streams.items()}}

    if not (work / "A.pt").is_file():  # 1. model A on a quarter of the normal frames
        _copy(streams["train"], work / "trainA")
        loop.run("train", "--data", str(work / "trainA"), "--out", str(work / "A.pt"), *loop.train_args)
    a = Checkpoint.load(work / "A.pt")
    out["model_a"] = describe(a, method)
    if not (work / "stream1.done").exists():  # 2. stream 1 through the pipeline, scored by A
        _copy(streams["stream1"], work / "incoming1")
        loop.run("watch", str(work / "incoming1"), "--once")
        (work / "stream1.done").touch()
    stream1 = {_sha256(p) for p, _ in streams["stream1"]}
    s1, t1 = loop.scores(a.version, stream1)
    if operate_at and not (work / "calibrated.done").exists():  # the plant's operating point
        value = at_recall(s1, t1, operate_at)["threshold"]
        reason = f"recall {operate_at:.0%} on stream 1's labels"
        loop.run("threshold", "set", repr(value), "--source", SOURCE, "--by", "bench", "--reason", reason)
        (work / "calibrated.done").write_text(json.dumps({"recall": operate_at, "threshold": value}))
    calibrated = work / "calibrated.done"
    out["operating_point"] = json.loads(calibrated.read_text()) if calibrated.exists() else None
    if not (work / "review1.done").exists():  # 3. the operators review the queue
        normal, anomaly = loop.review(flagged_only=True, who="operators", unflagged_share=sample_unflagged)
        (work / "review1.done").write_text(json.dumps([normal, anomaly]))
    normal, anomaly = json.loads((work / "review1.done").read_text())
    out["stream1"] = {
        "unflagged_sampled": sample_unflagged,
        "frames": len(s1),
        "reviewed": int(normal + anomaly),
        "reviewed_normal": normal,
        "reviewed_anomaly": anomaly,
        "defects": int(t1.sum()),
    }
    if not (work / "B.pt").is_file():  # 4. retrain from the reviews, register B as the candidate
        loop.run("retrain", "--from", str(work / "A.pt"), "--out", str(work / "B.pt"), "--source", SOURCE)
        loop.run(
            "model", "register", str(work / "B.pt"), "--by", "bench", "--reason", "operator loop round 1"
        )
    b = Checkpoint.load(work / "B.pt")
    choice = b.metadata.get("method_choice")
    out["model_b"] = {
        "method": b.default_method,
        "why": "A's"
        if not choice
        else f"by the operators' labels, ROC-AUC on the held-out reviewed "
        f"frames {choice['auroc']}, one standard error {choice['error']}",
    }
    if not (work / "stream2.done").exists():  # 5. the evaluation stream: A live, B in shadow
        _copy(streams["stream2"], work / "incoming2")
        loop.run("watch", str(work / "incoming2"), "--once")
        (work / "stream2.done").touch()
    if not (work / "review2.done").exists():  # 6. an audit: every evaluation frame labelled
        (work / "review2.done").write_text(json.dumps(loop.review(flagged_only=False, who="audit")))
    compared = loop.run("model", "compare", "--last", "1000")
    out["compare_output"] = compared.rstrip().splitlines()

    stream2 = {_sha256(p) for p, _ in streams["stream2"]}
    evaluation: dict[str, dict] = {}
    with session_scope(loop.settings.db_url) as session:  # A's threshold for the source now
        live_threshold = effective_threshold(session, a.version, Detector(a, device="cpu").method, SOURCE)
    for name, version in (("A (live)", a.version), ("B (candidate, shadow)", b.version)):
        scores, defect = loop.scores(version, stream2)
        evaluation[name] = {"frames": len(scores), "scores": scores, "defect": defect}
    a_eval = evaluation["A (live)"]
    live_recall = at_threshold(a_eval["scores"], a_eval["defect"], live_threshold)

    # The peer: as many frames as the operators reviewed, drawn at random from stream 1.
    peer_path = work / "peer-random.pt"
    reviewed_count = normal + anomaly
    drawn = random.Random(1).sample(streams["stream1"], reviewed_count)
    peer_frames = [p for p, defect in drawn if not defect]
    if not peer_path.is_file():
        items = [LabelledFile(_sha256(p), "anomaly" if d else "normal", SOURCE, p) for p, d in drawn]
        report = retrain(loop.settings, work / "A.pt", peer_path, items)
        loop.log += ["(peer) retrain on random stream-1 frames:", *report.lines()]
    peer = Detector.load(peer_path, device="cpu")
    files = [p for p, _ in streams["stream2"]]
    pixels = np.stack([load_frame(p, peer.frame_spec) for p in files])
    evaluation["peer: B's retraining on random frames"] = {
        "frames": len(files),
        "scores": np.array([d.score for d in peer.score_arrays(pixels)]),
        "defect": np.array([d for _, d in streams["stream2"]]),
    }

    table = {}
    for name, entry in evaluation.items():
        scores, defect = entry["scores"], entry["defect"]
        row = {"roc_auc": Labelled.from_arrays(scores, defect).auc()}
        # Matched recall, as `inspector model compare` reads it: the live model at its threshold,
        # the others at the highest threshold that reaches the same recall.
        live = entry is a_eval
        row["matched"] = live_recall if live else at_recall(scores, defect, live_recall["recall"])
        for recall in RECALLS:
            row[f"recall {recall:.0%}"] = at_recall(scores, defect, recall)
        table[name] = row
    out["live_threshold"] = live_recall
    out["table"] = table
    out["peer"] = {"frames drawn": reviewed_count, "normal among them": len(peer_frames)}

    if not (work / "promoted.done").exists():  # 7. promote; new frames are B's
        loop.run("model", "promote", "--by", "bench", "--reason", "fewer false alarms at the same recall")
        _copy(streams["train"][1:4], work / "incoming3")  # three more frames (never through the pipeline)
        loop.run("watch", str(work / "incoming3"), "--once")
        (work / "promoted.done").touch()
    out["after_promotion"] = loop.run("model", "list").rstrip().splitlines()
    out["log"] = loop.log
    out["seconds"] = time.time() - started
    out["cpu_seconds"] = time.process_time() - cpu
    out["versions"] = {"A": a.version, "B": b.version, "peer": peer.version}
    out["command"] = command
    return out


def describe(checkpoint: Checkpoint, method: str | None) -> dict:
    """How model A was trained and what it is; a work folder trained the other way is refused."""
    chosen = "selection" in checkpoint.metadata  # the label-free choice made it
    if (method is None) != chosen or (method and checkpoint.family.name != method):
        raise RuntimeError(f"the work folder's A.pt ({checkpoint.family.name}) was not trained as asked")
    spec = checkpoint.frame_spec
    described = {
        "trained": "the default path (`inspector train` with no method)" if method is None else method,
        "family": checkpoint.family.name,
        "method": checkpoint.default_method,
        "frames": f"{spec.mode} {spec.shape[0]}×{spec.shape[1]} px, flat-field σ {spec.flatten:g}",
    }
    if chosen:
        described["validation estimate"] = checkpoint.metadata["selection"]["estimate"]
    return described


def verdicts(out: dict) -> list[str]:
    table = out["table"]
    a, b = table["A (live)"], table["B (candidate, shadow)"]
    lines = []
    for key in ("matched", *(f"recall {r:.0%}" for r in RECALLS)):
        fa_a, fa_b = a[key]["false_alarms"], b[key]["false_alarms"]
        fall = 1 - fa_b / fa_a if fa_a else 0.0
        kept = b[key]["recall"] >= a[key]["recall"]
        met = fall >= GOAL and kept
        lines.append(
            f"{key}: false alarms {fa_a} → {fa_b} ({fall:.0%} fewer), recall {a[key]['recall']:.1%} → "
            f"{b[key]['recall']:.1%}: {'met' if met else '**not met**'}"
        )
    return lines


def render(out: dict) -> str:
    header = out["header"]
    lines = ["# Operator loop on magnetic tile (measured)", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    s1, a = out["stream1"], out["model_a"]
    lines += [
        "",
        "## The loop",
        "",
        f"- Model A: {out['counts']['train'][0]} train-normal frames (every fourth), trained by "
        f"{a['trained']}: {a['family']}, method `{a['method']}`, frames {a['frames']}"
        + (
            f", label-free validation estimate {a['validation estimate']:.3f}."
            if "validation estimate" in a
            else "."
        ),
        (
            f"- The plant's operating point: recall {point['recall']:.0%}, threshold "
            f"{point['threshold']:.4g} (the calibration page's rule on stream 1's labels), "
            "set by `inspector threshold set`."
            if (point := out["operating_point"])
            else "- The plant runs at A's default threshold (its held-out frames' 99th percentile)."
        ),
        f"- Stream 1: {s1['frames']} frames ({s1['defects']} defects) scored by A; the operators reviewed "
        f"the queue (every flagged frame) and {s1['unflagged_sampled']:.0%} of the unflagged frames, "
        f"drawn at random: {s1['reviewed_normal']} labelled normal, {s1['reviewed_anomaly']} anomaly.",
        "- Model B: `inspector retrain` from A and the reviews (a fifth of the reviewed normals held out), "
        f"scoring method `{out['model_b']['method']}` ({out['model_b']['why']}), "
        "registered as the candidate, scored stream 2 in shadow beside A.",
        f"- Stream 2 (evaluation, seen by neither): {out['counts']['stream2'][0]} frames, "
        f"{out['counts']['stream2'][1]} defects; every frame labelled afterwards, for measuring.",
        f"- A's threshold {out['live_threshold']['threshold']:.4g} reaches recall "
        f"{out['live_threshold']['recall']:.1%} on stream 2's defects: the matched recall.",
        "",
        "## Goal: false alarms at fixed recall fall by ≥ 50%, no drop in recall",
        "",
        *[f"- {line}" for line in verdicts(out)],
        "",
        "## Stream 2, each model at the threshold that reaches the recall (false alarms of "
        f"{out['counts']['stream2'][0] - out['counts']['stream2'][1]} normal frames, misses of "
        f"{out['counts']['stream2'][1]} defects)",
        "",
        "| model | ROC-AUC | matched recall: FA / misses | recall 90%: FA / misses "
        "| recall 95%: FA / misses |",
        "|---|---|---|---|---|",
    ]
    for name, row in out["table"].items():
        cells = [
            f"{row[k]['false_alarms']} / {row[k]['misses']}" for k in ("matched", "recall 90%", "recall 95%")
        ]
        lines.append(f"| {name} | {row['roc_auc']:.3f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The peer: {out['peer']['frames drawn']} frames drawn at random from stream 1 (as many as the "
        f"operators reviewed), labelled by the data set: the {out['peer']['normal among them']} normal "
        "ones (but the held-out fifth) added to A's training frames by the same retraining, the "
        "anomalous ones held out with them (where they may choose its scoring method).",
        "",
        "## `inspector model compare` (stream 2, from the stored live and shadow results)",
        "",
        "```",
        *out["compare_output"][:12],
        "```",
        "",
        "## After `inspector model promote`",
        "",
        "```",
        *out["after_promotion"],
        "```",
        "",
        "## The commands and what they printed",
        "",
        "```",
        *[line for line in out["log"] if len(line) < 400],
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the magnetic-tile folder (MT_* inside)")
    parser.add_argument("--work", type=Path, default=Path("operator-loop-work"), help="kept between runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--quick", action="store_true", help="tiny model, one epoch, 96-px frames, 60-frame streams"
    )
    parser.add_argument(
        "--operate-at",
        type=float,
        default=0.9,
        help="the recall the plant runs at (its threshold calibrated on stream 1); 0: A's default threshold",
    )
    parser.add_argument(
        "--sample-unflagged",
        type=float,
        default=0.0,
        help="the operators also review this share of stream 1's unflagged frames, drawn at random",
    )
    parser.add_argument(
        "--method",
        choices=[m for m in METHODS if m],
        default=None,
        help="train model A as this (the runs before the default path: vaegan-z); default: as a user "
        "would, `inspector train` with no method",
    )
    parser.add_argument(
        "--name", default=None, help="results file name (default operator_loop[_vaegan_z][_quick])"
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.operator_loop", *sys.argv[1:]])
    out = run(
        args.data,
        args.work,
        args.threads,
        command,
        args.quick,
        args.operate_at,
        args.sample_unflagged,
        args.method,
    )
    out["header"] = {
        "command": f"`{command}`",
        "git commit": git_commit(),
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()} CPU ({platform.node()}), torch threads {args.threads}, "
        "shared with other jobs",
        "wall time": f"{out['seconds'] / 60:.1f} min (this run; steps kept from an earlier run not redone)",
        "CPU time": f"{out['cpu_seconds'] / 60:.1f} min (this process)",
        "models": json.dumps(out["versions"]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name or "operator_loop" + (f"_{args.method.replace('-', '_')}" if args.method else "")
    name += "_quick" if args.quick and not args.name else ""
    write_report(args.out / f"{name}.md", render(out))
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=1, default=float))
    print(render(out))


if __name__ == "__main__":
    main()
