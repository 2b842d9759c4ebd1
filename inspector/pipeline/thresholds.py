"""Where the line between normal and anomaly lies, and how it moves: every threshold rule, in one place.

- The rule: a frame is an anomaly when its score is *above* its threshold (``is_anomaly``).
- The line: a score means something only on its (model version, method) scale, so a
  threshold is kept per (source, model version, method): the source's own, else the default
  registered with the checkpoint for that method. The pipeline judges new results and the
  dashboard shows them by the same ``effective_thresholds``.
- Moving it: `inspector threshold set` and the dashboard both call ``set_threshold``, which
  records who changed it, from what and why, and judges that source's stored results again.
- Choosing it from operators' labels: confusion counts, ROC / PR curves, the threshold for a
  target recall (calibration), by the same rule, all from one sort of the labelled scores and
  its cumulative sums (``Labelled``: O(n log n), so the page stays fast at 100 000 labels);
  matched recall, another model's threshold at the live one's recall (``matched_recall``).
- Carrying it over: a promoted model is judged at the live model's operating point, not at its
  checkpoint's default (``carry_over``), so verdicts do not jump at the switch.
The SQL behind them is store/queries.py's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from inspector.store import queries, registry
from inspector.store.models import Model, ThresholdChange
from inspector.store.registry import Key, Pair


class ThresholdError(ValueError):
    """A threshold that cannot be set: unknown model, or not a finite number."""


def is_anomaly(score: float, threshold: float) -> bool:
    """The rule (its SQL form: queries.rejudge_results)."""
    return score > threshold


# --- the line --------------------------------------------------------------------------------


def resolve_model(
    session: Session, model_version: str | None, method: str | None = None, source: str | None = None
) -> Model:
    """The model (version and method) a threshold is for: the version named, else the source's
    live model (store.registry.default_models: never a candidate on trial); the method named,
    which a version registered with several needs."""
    registered = (
        queries.models_of(session, model_version)
        if model_version
        else registry.default_models(session, source)
    )
    if method is not None:
        registered = [m for m in registered if m.method == method]
    with_method = "" if method is None else f" with method {method!r}"
    if not registered:
        if model_version:
            raise ThresholdError(f"unknown model version {model_version!r}{with_method}")
        raise ThresholdError(f"no model is registered yet{with_method}: score some frames first")
    if model_version and len(registered) > 1:
        names = ", ".join(m.method for m in registered)
        raise ThresholdError(f"model {model_version} scores with several methods ({names}): name one")
    return registered[-1]


def default_threshold(session: Session, model_version: str, method: str) -> float:
    """The default registered with the checkpoint for this method."""
    default = queries.default_threshold(session, model_version, method)
    if default is None:
        raise ThresholdError(f"model {model_version} is not registered with method {method!r}")
    return default


def effective_thresholds(
    session: Session, model_version: str, method: str, sources: Iterable[str]
) -> dict[str, float]:
    """The threshold each source's frames are judged by under this model and method."""
    sources = set(sources)
    default = default_threshold(session, model_version, method)
    overrides = queries.threshold_overrides(session, model_version, method, sources)
    return {source: overrides.get(source, default) for source in sources}


def effective_threshold(session: Session, model_version: str, method: str, source: str | None) -> float:
    """One source's threshold; without a source, the model's default."""
    if source is None:
        return default_threshold(session, model_version, method)
    return effective_thresholds(session, model_version, method, [source])[source]


# --- moving it -------------------------------------------------------------------------------


def set_threshold(
    session: Session,
    source: str,
    model_version: str,
    method: str,
    value: float,
    who: str,
    reason: str | None = None,
) -> tuple[ThresholdChange, int]:
    """Set a source's threshold for a model version and method, record who changed it, from what,
    and why, and judge that source's stored results again; returns the change and how many
    verdicts flipped. The CLI and the dashboard both come here, so a threshold means the same
    wherever it is set."""
    if not math.isfinite(value):
        raise ThresholdError(f"a threshold must be a finite number, not {value}")
    if queries.get_model(session, model_version, method) is None:
        raise ThresholdError(f"unknown model version {model_version!r} with method {method!r}")
    if not source or not who:
        raise ThresholdError("a threshold change needs a source and the name of who made it")
    old = effective_threshold(session, model_version, method, source)
    change = queries.record_threshold(session, source, model_version, method, old, float(value), who, reason)
    return change, queries.rejudge_results(session, source, model_version, method, float(value))


@dataclass
class ThresholdView:
    model_version: str
    method: str
    source: str  # "*" for the model's default
    value: float
    updated_by: str | None


def threshold_table(session: Session, model_version: str | None = None) -> list[ThresholdView]:
    """Each model's (version and method) default followed by its per-source overrides."""
    models = queries.models_of(session, model_version) if model_version else queries.list_models(session)
    if model_version and not models:
        raise ThresholdError(f"unknown model version {model_version!r}")
    overrides = queries.list_thresholds(session, model_version)
    views = []
    for model in models:
        views.append(ThresholdView(model.version, model.method, "*", model.default_threshold, None))
        views.extend(
            ThresholdView(t.model_version, t.method, t.source, t.value, t.updated_by)
            for t in overrides
            if (t.model_version, t.method) == (model.version, model.method)
        )
    return views


# --- choosing it from labels -----------------------------------------------------------------

Sample = tuple[float, str]  # (score, label "anomaly" | "normal")


@dataclass(frozen=True)
class Operating:
    """What a threshold does on the labelled frames."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0


class Labelled:
    """Labelled scores sorted once by falling score: every number of calibration comes from this
    one O(n log n) sort and its cumulative sums (no pass over the samples per point).

    A threshold flags the scores *above* it (``is_anomaly``): here, the first scores of the
    falling order, counted with a binary search.
    """

    def __init__(self, samples: list[Sample]):
        scores = np.fromiter((score for score, _ in samples), np.float64, len(samples))
        anomalous = np.fromiter((label == "anomaly" for _, label in samples), bool, len(samples))
        self._sort(scores, anomalous)

    @classmethod
    def from_arrays(cls, scores: np.ndarray, anomalous: np.ndarray) -> Labelled:
        labelled = cls.__new__(cls)
        labelled._sort(scores, anomalous)
        return labelled

    def _sort(self, scores: np.ndarray, anomalous: np.ndarray) -> None:
        order = np.argsort(-scores, kind="stable")
        self.scores, self.anomalous = scores[order], anomalous[order]
        self.positives = int(anomalous.sum())
        self.negatives = len(scores) - self.positives
        self._tp = np.r_[0, np.cumsum(self.anomalous)]  # true positives among the first k scores
        # The last sample of each run of equal scores (none for no samples).
        last = np.append(self.scores[1:] != self.scores[:-1], True)[: len(scores)]
        counts = np.r_[0, np.flatnonzero(last) + 1]  # flag nothing, then down to each distinct score
        # The threshold that flags the scores down to each distinct score: just below it, as
        # ``is_anomaly`` decides; the first (infinity) flags nothing.
        self.cuts = np.r_[np.inf, np.nextafter(self.scores[last], -np.inf)]
        self.tp = self._tp[counts]
        self.fp = counts - self.tp

    def _point(self, threshold: float, tp: int, fp: int) -> Operating:
        return Operating(
            float(threshold), int(tp), int(fp), self.positives - int(tp), self.negatives - int(fp)
        )

    def operating(self, threshold: float) -> Operating:
        flagged = int(np.searchsorted(-self.scores, -threshold, side="left"))  # scores > threshold
        tp = int(self._tp[flagged])
        return self._point(threshold, tp, flagged - tp)

    def curve(self, max_points: int | None = None) -> list[Operating]:
        """Operating points from "flag nothing" to "flag everything", one per distinct score.

        With ``max_points``, for drawing: only the points where the false-positive rate, recall
        or precision moved to another of ``max_points`` steps (and the last), about as many as
        a chart of that many pixels can show, whatever the number of labelled frames.
        """
        if not len(self.scores):
            return []
        keep = np.arange(len(self.cuts))
        if max_points is not None and len(self.cuts) > max_points:
            flagged = self.tp + self.fp
            precision = np.where(flagged > 0, self.tp / np.maximum(flagged, 1), 1.0)
            steps = np.stack(
                [self.fp / max(self.negatives, 1), self.tp / max(self.positives, 1), precision], axis=1
            )
            cells = np.floor(steps * max_points)
            moved = np.r_[True, np.any(cells[1:] != cells[:-1], axis=1)]
            moved[-1] = True
            keep = np.flatnonzero(moved)
        return [self._point(self.cuts[i], self.tp[i], self.fp[i]) for i in keep]

    def auc(self) -> float:
        """Area under the ROC curve through every operating point (a drawn curve may be thinned)."""
        recall, fpr = self.tp / max(self.positives, 1), self.fp / max(self.negatives, 1)
        return float(np.sum(np.diff(fpr) * (recall[1:] + recall[:-1]) / 2))

    def threshold_for_recall(self, target: float) -> float | None:
        """The highest threshold whose recall on labelled anomalies is at least ``target``.

        It sits halfway between the lowest anomaly that must still be flagged and the next
        lower labelled score, so small score noise does not flip the labelled frames.
        """
        anomalies = self.scores[self.anomalous][::-1]  # rising
        if not len(anomalies):
            return None
        missable = math.floor((1 - target) * len(anomalies) + 1e-9)
        lowest_kept = float(anomalies[min(missable, len(anomalies) - 1)])
        below = self.scores[self.scores < lowest_kept]  # falling: the first is the highest
        if len(below):
            return (float(below[0]) + lowest_kept) / 2
        return math.nextafter(lowest_kept, -math.inf)


def matched_recall(live: Labelled, live_threshold: float, other: Labelled) -> tuple[float, float]:
    """The live threshold's recall on the labelled anomalies (there must be one), and the highest
    threshold of another model (the same frames, its scores) that reaches it. Fewer false alarms
    at the same recall is a better model, whatever the scales of the two scores."""
    recall = live.operating(live_threshold).recall
    matched = other.threshold_for_recall(recall)
    if matched is None:
        raise ValueError("matched recall needs a labelled anomaly")
    return recall, matched


# --- carrying it over to a promoted model ------------------------------------------------------

CARRY_ANOMALIES = 20
CARRY_FRAMES = 200
CARRY_FLAGGED = 10
CARRY_LAST = 1000


@dataclass(frozen=True)
class Carried:
    """A promoted model's threshold for a source from now on, and how it came to be."""

    source: str
    model: Key
    threshold: float
    how: str
    change: ThresholdChange | None = None  # None: the model's own threshold kept
    flipped: int = 0  # its stored verdicts on the source's frames judged otherwise now

    def line(self) -> str:
        version, method = self.model
        text = f"{self.source}: {version} ({method}) judged at threshold {self.threshold:.4g}, {self.how}"
        return text + (f"; {self.flipped} of its stored verdicts changed" if self.change else "")


def kept(session: Session, source: str, model: Key, why: str) -> Carried:
    """The model keeps its own threshold for the source (its checkpoint's default, unless one was
    set for it there before)."""
    value = effective_threshold(session, *model, source)
    return Carried(source, model, value, f"its own kept: {why}")


def _matched(pairs: list[Pair], counted: np.ndarray, live_threshold: float) -> tuple[float, float]:
    """``matched_recall`` on frames both models scored, among the ``counted`` ones."""
    live = Labelled.from_arrays(np.array([pair.live_score for pair in pairs]), counted)
    promoted = Labelled.from_arrays(np.array([pair.candidate_score for pair in pairs]), counted)
    return matched_recall(live, live_threshold, promoted)


def carry_over(session: Session, source: str, promoted: Key, who: str) -> Carried:
    """Set a model's threshold for a source, called as it is promoted there and before the switch,
    at the operating point of the model that judges the source until then (its live one, at its
    threshold there), through ``set_threshold`` (an audit row by ``who``, the stored verdicts
    judged again):

    1. the same recall on the reviewed anomalies both models scored (``matched_recall``), when
       there are at least CARRY_ANOMALIES (20): below that one anomaly is more than 5 points of
       recall, and the threshold would hang on a couple of frames' scores;
    2. else the same flag rate on the last CARRY_LAST (1000) frames both scored, when there are
       at least CARRY_FRAMES (200) and the live model flagged at least CARRY_FLAGGED (10) of
       them: the threshold that flags as many of them (a quantile of the promoted model's
       scores: matched recall with every frame counted); a rate from fewer frames, or a quantile
       resting on fewer flagged ones, is mostly noise;
    3. else the promoted model keeps its own threshold, and the result says why.
    """
    judging = registry.default_models(session, source)
    live = (judging[-1].version, judging[-1].method) if judging else None
    if live is None or live == promoted:
        return kept(session, source, promoted, f"no other model has judged {source}'s frames")
    live_threshold = effective_threshold(session, *live, source)
    origin = f"carried over from live {live[0]} ({live[1]}) at {live_threshold:.4g}"
    reviewed = registry.scored_by_both(session, live, promoted, source, reviewed=True)
    anomalous = np.array([pair.label == "anomaly" for pair in reviewed], bool)
    anomalies = int(anomalous.sum())
    if anomalies >= CARRY_ANOMALIES:
        recall, value = _matched(reviewed, anomalous, live_threshold)
        how = f"{origin}: the same recall, {recall:.1%}, on the {anomalies} reviewed anomalies both scored"
    else:
        recent = registry.scored_by_both(session, live, promoted, source, last=CARRY_LAST)
        flagged = sum(is_anomaly(pair.live_score, live_threshold) for pair in recent)
        if len(recent) < CARRY_FRAMES or flagged < CARRY_FLAGGED:
            return kept(
                session,
                source,
                promoted,
                f"{anomalies} reviewed anomalies and {len(recent)} recent frames ({flagged} flagged "
                f"by the live model) both scored; carrying over needs {CARRY_ANOMALIES} anomalies, "
                f"or {CARRY_FRAMES} frames with {CARRY_FLAGGED} flagged",
            )
        rate, value = _matched(recent, np.ones(len(recent), bool), live_threshold)
        how = (
            f"{origin}: the same flag rate, {rate:.1%} ({flagged} of {len(recent)}), on the last "
            f"frames both scored ({anomalies} reviewed anomalies: too few to match recall)"
        )
    change, flipped = set_threshold(session, source, *promoted, value, who, f"at promotion, {how}")
    return Carried(source, promoted, change.new_value, how, change, flipped)
