"""Live against candidate, on the frames both scored: what `inspector model compare` prints and the
dashboard's Models page shows before anyone promotes.

- On reviewed frames (their latest label): each model's ROC-AUC, and false alarms and misses at
  *matched recall*: the live model at its threshold for the source (its recall on the reviewed
  anomalies), the candidate at the highest threshold that reaches the same recall. Fewer false
  alarms at the same recall is a better model, whatever the scales of the two scores.
- On the last N frames both scored, labelled or not: how often each flags, and the frames
  where their stored verdicts differ (each at its own threshold), with links to both results.
The SQL is store/registry.py's (``scored_by_both``); the threshold rules are thresholds.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from inspector.pipeline import registry
from inspector.pipeline.registry import RegistryError
from inspector.pipeline.thresholds import Labelled, Operating, effective_threshold, matched_recall
from inspector.store import registry as store
from inspector.store.models import ALL_SOURCES
from inspector.store.registry import Key, Pair


@dataclass
class Side:
    """One model's figures."""

    version: str
    method: str
    threshold: float  # where its figures on reviewed frames are read
    auc: float | None = None
    at_recall: Operating | None = None  # on reviewed frames, at the matched recall
    flagged_recent: int = 0  # among the last N frames


@dataclass
class Comparison:
    source: str
    live: Side
    candidate: Side
    reviewed: int = 0  # reviewed frames both scored
    anomalies: int = 0
    recall: float | None = None  # the live threshold's recall on them: the matched recall
    recent: int = 0  # the last N frames both scored
    disagreements: list[Pair] = field(default_factory=list)  # among them, newest first

    def lines(self, base: str = "") -> list[str]:
        live, candidate = self.live, self.candidate
        lines = [
            f"{self.source}: live {live.version} ({live.method}) against candidate "
            f"{candidate.version} ({candidate.method})",
            f"reviewed frames both scored: {self.reviewed} ({self.anomalies} anomalies)",
        ]
        if self.recall is not None:
            lines.append(f"at matched recall {self.recall:.1%} (the live threshold's on them):")
        elif self.reviewed:
            lines.append("no reviewed anomaly among them: each model at its own threshold")
        for name, side in (("live", live), ("candidate", candidate)):
            point = side.at_recall
            auc = "–" if side.auc is None else f"{side.auc:.3f}"
            if point is not None:
                lines.append(
                    f"  {name:<9} ROC-AUC {auc}  threshold {side.threshold:.4g}: "
                    f"{point.fp} false alarms, {point.fn} misses"
                )
        lines.append(
            f"last {self.recent} frames both scored: live flagged {live.flagged_recent}, "
            f"candidate {candidate.flagged_recent}; they disagree on {len(self.disagreements)}"
        )
        for pair in self.disagreements[:20]:
            label = pair.label or "unreviewed"
            lines.append(
                f"  frame {pair.frame_id} ({label}): live {pair.live_score:.4g} "
                f"{'flagged' if pair.live_flagged else 'normal'} {base}/results/{pair.live_id}, "
                f"candidate {pair.candidate_score:.4g} {'flagged' if pair.candidate_flagged else 'normal'} "
                f"{base}/results/{pair.candidate_id}"
            )
        return lines


def lineup(session: Session, source: str) -> tuple[Key, Key]:
    """The source's live model (the registry's, else the configured one) and its candidate."""
    held = registry.lineup_of(store.assignments(session, source), source)
    if held.candidate is None:
        raise RegistryError(f"{source} has no candidate to compare: inspector model register ...")
    if held.live is not None:
        return (held.live.version, held.live.method), (held.candidate.version, held.candidate.method)
    configured = store.default_models(session, None if source == ALL_SOURCES else source)
    if not configured:
        raise RegistryError(f"no live model has scored {source} yet")
    return (configured[-1].version, configured[-1].method), (held.candidate.version, held.candidate.method)


def compare(
    session: Session, source: str, last: int = 500, models: tuple[Key, Key] | None = None
) -> Comparison:
    """Live against candidate for a source (``*``: all sources), or the two ``models`` given."""
    live_key, candidate_key = models or lineup(session, source)
    where = None if source == ALL_SOURCES else source
    live = Side(*live_key, threshold=effective_threshold(session, *live_key, where))
    candidate = Side(*candidate_key, threshold=effective_threshold(session, *candidate_key, where))
    result = Comparison(source, live, candidate)

    reviewed = store.scored_by_both(session, live_key, candidate_key, where, reviewed=True)
    anomalous = np.array([pair.label == "anomaly" for pair in reviewed], bool)
    result.reviewed, result.anomalies = len(reviewed), int(anomalous.sum())
    if reviewed:
        scored = {
            "live": Labelled.from_arrays(np.array([p.live_score for p in reviewed]), anomalous),
            "candidate": Labelled.from_arrays(np.array([p.candidate_score for p in reviewed]), anomalous),
        }
        if 0 < result.anomalies < len(reviewed):
            live.auc, candidate.auc = scored["live"].auc(), scored["candidate"].auc()
        if result.anomalies:
            result.recall, candidate.threshold = matched_recall(
                scored["live"], live.threshold, scored["candidate"]
            )
        live.at_recall = scored["live"].operating(live.threshold)
        candidate.at_recall = scored["candidate"].operating(candidate.threshold)

    recent = store.scored_by_both(session, live_key, candidate_key, where, last=last)
    result.recent = len(recent)
    live.flagged_recent = sum(pair.live_flagged for pair in recent)
    candidate.flagged_recent = sum(pair.candidate_flagged for pair in recent)
    result.disagreements = [pair for pair in recent if pair.live_flagged != pair.candidate_flagged]
    return result
