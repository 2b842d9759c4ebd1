"""`inspector retrain`: the next model, from the live model's training frames and operators' reviews.

The candidate trains, with the live checkpoint's family, model and frame settings and training
options, on
- the live model's own normal frames: its checkpoint records each by path and content hash; a
  file moved since is found again by its hash among the frames the pipeline archived;
- frames reviewed as normal (their latest review), but a fifth of them held out: those of the
  lowest content hashes (a rerun holds out the same ones, and a review added later moves few);
never on a frame reviewed as an anomaly: an original frame since reviewed anomalous is dropped.
The split is the live model's: the original frames it held out set the candidate's threshold
(when none of them is left, training draws the split among the original frames), the others and
the reviewed normals train, so the two models differ by the frames added. The reviewed normals
are remembered whole (``train``'s ``remember``; the checkpoint records them, and the next round
remembers them whole again): a memory family keeps the coreset of the other frames as the live
model did and adds the reviewed frames' patches it does not cover as finely (the normal
appearance the live memory lacked), so its memory grows; the report gives both sizes.

Its scoring method is the one asked for, else the operators' labels choose it: where the held-out
reviewed frames count CHOOSE_FROM normal and anomalous ones at least, the family's method of the
highest ROC-AUC on them, if it beats the live model's method by more than one standard error
(``selection.paired_auroc_error``), else the live model's. The label-free choice at first
training ranks methods on synthetic anomalies; real reviewed ones rank them better (magnetic
tiles, operator loop: patch-mean 0.950 on the held-out reviewed frames against the chosen
patch-max-inner's 0.905, and 0.948 against 0.931 on the frames neither model saw).

The report compares live and candidate on the held-out reviewed frames, which neither trained
on (the candidate's method may have been chosen on them, so its figures there flatter it; the
fair comparison is ``inspector model compare`` on frames scored in shadow): the label-free
validation estimate (``inspector.selection``'s: the ROC-AUC of the held-out normal frames
against synthetic anomalies made from them, ``inspector.synthetic``) and, at the recall the
live threshold reaches on the held-out anomalies, each model's false alarms among the held-out
normals. Reviews come mostly from flagged frames, so these normals are the live model's false
alarms: its rate there is high by construction; what matters is how many of them the candidate
would still flag.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.config import Settings
from inspector.detector import Checkpoint, Detector, method_scores
from inspector.frames import FrameError, frame_from_bytes
from inspector.pipeline.dataset import LabelledFile, locate, read_checked
from inspector.pipeline.thresholds import Labelled, matched_recall
from inspector.selection import auroc, paired_auroc_error
from inspector.store import queries
from inspector.store.db import session_scope
from inspector.synthetic import anomalies
from inspector.training import ProgressFn, TrainOptions, train

HOLDOUT = 0.2  # share of the reviewed-normal frames held out (by content hash)
CHOOSE_FROM = 10  # held-out reviewed normal and anomalous frames, each, for the labels to choose a method


class RetrainError(ValueError):
    """Retraining cannot start: the checkpoint records no training frames, or none can be read."""


def held_out(content_hashes: set[str], fraction: float = HOLDOUT) -> set[str]:
    """The reviewed-normal frames held out: the ``fraction`` of lowest content hash (at least one
    of two or more), so a rerun holds out the same ones."""
    count = max(round(len(content_hashes) * fraction), 1 if len(content_hashes) > 1 else 0)
    return set(sorted(content_hashes)[:count])


@dataclass
class Comparison:
    """Live and candidate on the held-out reviewed frames."""

    normals: int
    anomalies: int
    estimate_live: float | None = None  # label-free: held-out normals against synthetic anomalies
    estimate_candidate: float | None = None
    # By the reviews: ROC-AUC of the held-out normals against the held-out anomalies. The false
    # alarms below are read at the recall the live threshold reaches on them, 100% where every
    # reviewed anomaly was a flagged frame: there one hard anomaly decides them.
    auroc_live: float | None = None
    auroc_candidate: float | None = None
    recall: float | None = None  # the live threshold's recall on the held-out anomalies
    threshold_live: float = 0.0
    threshold_candidate: float = 0.0  # the candidate's threshold for the same recall
    false_alarms_live: int = 0
    false_alarms_candidate: int = 0

    def rate(self, false_alarms: int) -> float | None:
        return false_alarms / self.normals if self.normals else None


@dataclass
class MethodChoice:
    """The candidate's scoring method, chosen on the held-out reviewed frames (operators' labels)."""

    live: str  # the live model's method
    chosen: str
    auroc: dict[str, float]  # each of the family's methods, on the held-out reviewed frames
    error: float  # one standard error of the best method's lead over the live model's

    def line(self) -> str:
        figures = ", ".join(f"{m} {a:.3f}" for m, a in sorted(self.auroc.items(), key=lambda kv: -kv[1]))
        if self.chosen == self.live:
            why = f"kept the live model's {self.live}: no method beats it by more than one standard error"
        else:
            why = (
                f"chose {self.chosen}: it beats the live model's {self.live} by more than one standard error"
            )
        return (
            f"scoring method, by the operators' labels (ROC-AUC on the held-out reviewed frames): {figures}; "
            f"{why} ({self.error:.3f})"
        )


@dataclass
class RetrainReport:
    live_version: str
    candidate_version: str
    method: str
    originals: int  # recorded in the live checkpoint
    originals_used: int
    originals_missing: list[str] = field(default_factory=list)
    originals_dropped: int = 0  # reviewed as anomalies since
    reviewed_trained: int = 0  # reviewed normal, trained on
    reviewed_missing: list[str] = field(default_factory=list)
    comparison: Comparison | None = None
    seconds: float = 0.0
    banks: tuple[int, int] | None = None  # a memory's patches, live and candidate: its scoring cost
    method_choice: MethodChoice | None = None

    def lines(self) -> list[str]:
        lines = [
            f"candidate {self.candidate_version} from {self.live_version} ({self.method}), "
            f"{self.seconds:.0f} s",
            f"original normal frames: {self.originals_used} of {self.originals} "
            f"({len(self.originals_missing)} missing, {self.originals_dropped} since reviewed as anomalies)",
            f"reviewed normal frames trained on: {self.reviewed_trained}; "
            f"{len(self.reviewed_missing)} reviewed frames unreadable",
        ]
        lines += [f"  missing: {why}" for why in (self.originals_missing + self.reviewed_missing)[:10]]
        if self.banks:
            live, candidate = self.banks
            lines.append(
                f"memory: live {live} patches, candidate {candidate} (scoring time grows with it; "
                "the reviewed normals add what the live memory did not cover)"
            )
        if self.method_choice:
            lines.append(self.method_choice.line())
        c = self.comparison
        if c is None:
            return lines
        lines.append(f"held out: {c.normals} reviewed normal, {c.anomalies} reviewed anomalous frames")
        if c.estimate_live is not None and c.estimate_candidate is not None:
            lines.append(
                "label-free validation estimate (ROC-AUC, the held-out normals against synthetic "
                f"anomalies made from them): live {c.estimate_live:.3f}, candidate {c.estimate_candidate:.3f}"
            )
        if c.auroc_live is not None and c.auroc_candidate is not None:
            lines.append(
                "ROC-AUC by the reviews (the held-out normal against the held-out anomalous frames): "
                f"live {c.auroc_live:.3f}, candidate {c.auroc_candidate:.3f}"
            )
        if c.recall is None:
            lines.append("no held-out anomalies: false alarms at each model's default threshold")
        else:
            lines.append(f"at the live threshold's recall on the held-out anomalies ({c.recall:.1%}):")
        for name, threshold, count in (
            ("live", c.threshold_live, c.false_alarms_live),
            ("candidate", c.threshold_candidate, c.false_alarms_candidate),
        ):
            rate = c.rate(count)
            shown = "–" if rate is None else f"{rate:.1%}"
            lines.append(
                f"  {name:<9} threshold {threshold:.4g}: {count} false alarms of {c.normals} ({shown})"
            )
        return lines


def _original(settings: Settings, record: dict[str, str]) -> tuple[LabelledFile, bytes | None]:
    """A recorded training frame's bytes: at its recorded path, else archived under its hash."""
    item = LabelledFile(record["sha256"], "normal", "", Path(record["path"]))
    data = read_checked(item)
    if data is None:
        with session_scope(settings.db_url) as session:
            frame = queries.frames_by_hash(session, [item.content_hash]).get(item.content_hash)
        if frame is not None:
            item.file, item.missing = locate(settings, frame.stored_path, frame.path, frame.pruned_at)
            data = read_checked(item)
        elif not item.missing:
            item.missing = f"{record['path']} is gone and the archive does not hold it"
    return item, data


def retrain(
    settings: Settings,
    live_path: Path,
    out: Path,
    reviewed: list[LabelledFile],
    *,
    method: str | None = None,
    live_threshold: float | None = None,
    epochs: int | None = None,
    progress: ProgressFn | None = None,
) -> RetrainReport:
    """Train a candidate from the live checkpoint's frames and the reviewed ones, write it to
    ``out``, and compare the two on the held-out reviewed frames (see the module's docstring).
    ``method``: the candidate's scoring method, compared with the live model's at it (default:
    the live model's). ``live_threshold``: the live model's threshold where it scores (default:
    its checkpoint's)."""
    started = time.time()
    live = Checkpoint.load(live_path)
    live_detector = Detector(live, method=method, device=settings.device)  # a wrong method fails here
    records = live.metadata.get("training_frames")
    if not records:
        raise RetrainError(
            f"{live_path} records no training frames (trained before inspector recorded them): "
            "train it again with `inspector train`"
        )
    spec = live.frame_spec
    anomalous = {item.content_hash for item in reviewed if item.label == "anomaly"}
    report = RetrainReport(live.version, "", "", originals=len(records), originals_used=0)

    frames: list[np.ndarray] = []
    used: list[dict[str, Any]] = []
    validation: list[bool] = []  # held out by the live model's training: they set the threshold
    whole: list[bool] = []  # remembered whole: reviewed normals, this round's or an earlier one's
    seen: set[str] = set()

    def take(item: LabelledFile, data: bytes, apart: bool, remember: bool) -> bool:
        try:
            prepared = frame_from_bytes(data, spec)
        except FrameError as exc:
            item.missing = f"{item.file}: {exc}"
            return False
        frames.append(prepared.pixels)
        used.append({"path": str(item.file), "sha256": item.content_hash, "level": prepared.level})
        validation.append(apart)
        whole.append(remember)
        seen.add(item.content_hash)
        return True

    for record in records:
        if record["sha256"] in anomalous:
            report.originals_dropped += 1
            continue
        item, data = _original(settings, record)
        apart, remember = bool(record.get("heldout")), bool(record.get("remembered"))
        if data is not None and record["sha256"] not in seen and take(item, data, apart, remember):
            report.originals_used += 1
        elif data is None:
            report.originals_missing.append(item.missing)

    heldout: list[tuple[np.ndarray, bool]] = []  # (pixels, anomalous)
    normals = {
        item.content_hash for item in reviewed if item.label == "normal" and item.content_hash not in seen
    }
    kept_apart = held_out(normals)
    for item in reviewed:
        if item.label not in ("normal", "anomaly") or item.content_hash in seen:
            continue
        data = read_checked(item)
        if data is None:
            report.reviewed_missing.append(item.missing or "unreadable")
            continue
        if item.label == "normal" and item.content_hash not in kept_apart:
            report.reviewed_trained += take(item, data, False, True)
            continue
        try:
            heldout.append((frame_from_bytes(data, spec).pixels, item.label == "anomaly"))
        except FrameError as exc:
            report.reviewed_missing.append(f"{item.file}: {exc}")
        seen.add(item.content_hash)
    if not frames:
        raise RetrainError(
            "none of the training frames could be read: " + "; ".join(report.originals_missing[:3])
        )

    names = {f.name for f in dataclasses.fields(TrainOptions)}
    options = TrainOptions(**{k: v for k, v in live.metadata.get("options", {}).items() if k in names})
    options.device = settings.device
    if epochs is not None:
        options.epochs = epochs
    candidate = train(
        np.stack(frames),
        live.model_config,
        spec,
        options,
        progress,
        records=used,
        heldout=validation if any(validation) else None,  # none left: training draws the split
        remember=whole,
    )
    candidate.metadata["retrained_from"] = live.version
    # The live model's method (asked for, or chosen at its first training) unless the operators'
    # labels choose another; the candidate's scores of the held-out reviewed frames serve both.
    candidate_detector = Detector(candidate, method=live_detector.method, device=settings.device)
    pixels = np.stack([p for p, _ in heldout]) if heldout else np.empty(0)
    anomalous_held = np.array([a for _, a in heldout], bool)
    scores: dict[str, np.ndarray] = {}
    if heldout:
        wanted = candidate.family.methods if method is None else (candidate_detector.method,)
        scores = method_scores(
            candidate_detector.model, wanted, pixels, candidate_detector.batch_size, candidate_detector.device
        )
    if method is None and heldout:
        report.method_choice = choose_method(scores, anomalous_held, candidate_detector.method)
        if report.method_choice:
            candidate_detector.method = report.method_choice.chosen  # a method of the same family
            candidate.metadata["method_choice"] = dataclasses.asdict(report.method_choice)
    candidate.metadata["method"] = candidate_detector.method
    candidate.save(out)

    report.candidate_version, report.method = candidate.version, candidate_detector.method
    if "memory.bank" in live.state_dict and "memory.bank" in candidate.state_dict:
        report.banks = (len(live.state_dict["memory.bank"]), len(candidate.state_dict["memory.bank"]))
    if heldout:
        threshold = live_detector.threshold if live_threshold is None else live_threshold
        donors = np.stack(frames[: report.originals_used] or frames)
        report.comparison = _compare(
            live_detector,
            candidate_detector,
            pixels,
            anomalous_held,
            scores[candidate_detector.method],
            threshold,
            donors,
        )
    report.seconds = time.time() - started
    return report


def choose_method(
    scores: dict[str, np.ndarray], anomalous: np.ndarray, live_method: str
) -> MethodChoice | None:
    """The candidate's method by its scores (each of its family's methods) of the held-out reviewed
    frames, ``anomalous`` or not: see the module's docstring. None where they are too few
    (CHOOSE_FROM of each kind)."""
    if min(anomalous.sum(), (~anomalous).sum()) < CHOOSE_FROM:
        return None
    labels = anomalous.astype(int)
    figures = {m: auroc(labels, s) for m, s in scores.items()}
    best = max(figures, key=lambda m: (figures[m], m == live_method))
    error = paired_auroc_error(labels, scores[best], scores[live_method])
    chosen = best if figures[best] - figures[live_method] > error else live_method
    return MethodChoice(live_method, chosen, {m: round(a, 4) for m, a in figures.items()}, round(error, 4))


def _estimate(detector: Detector, normals: np.ndarray, synthetic: np.ndarray) -> float:
    """The label-free validation estimate: normal frames against synthetic anomalies (ROC-AUC)."""
    scores = [d.score for d in detector.score_arrays(np.concatenate([normals, synthetic]))]
    return auroc(np.repeat([0, 1], [len(normals), len(synthetic)]), np.array(scores))


def _compare(
    live: Detector,
    candidate: Detector,
    pixels: np.ndarray,
    anomalous: np.ndarray,
    candidate_scores: np.ndarray,
    threshold: float,
    donors: np.ndarray,
) -> Comparison:
    """The two models on the held-out reviewed frames ``pixels`` (``anomalous`` or not), the
    candidate's scores of them given."""
    scores = {
        "live": Labelled.from_arrays(np.array([d.score for d in live.score_arrays(pixels)]), anomalous),
        "candidate": Labelled.from_arrays(candidate_scores, anomalous),
    }
    comparison = Comparison(normals=int((~anomalous).sum()), anomalies=int(anomalous.sum()))
    if comparison.normals:
        synthetic, _ = anomalies(pixels[~anomalous], donors)
        comparison.estimate_live = _estimate(live, pixels[~anomalous], synthetic)
        comparison.estimate_candidate = _estimate(candidate, pixels[~anomalous], synthetic)
    comparison.threshold_live, comparison.threshold_candidate = threshold, candidate.threshold
    if comparison.anomalies:
        comparison.recall, comparison.threshold_candidate = matched_recall(
            scores["live"], threshold, scores["candidate"]
        )
        if comparison.normals:
            comparison.auroc_live, comparison.auroc_candidate = (s.auc() for s in scores.values())
    comparison.false_alarms_live = scores["live"].operating(comparison.threshold_live).fp
    comparison.false_alarms_candidate = scores["candidate"].operating(comparison.threshold_candidate).fp
    return comparison
