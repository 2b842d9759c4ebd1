"""Where the line between normal and anomaly lies, and how it moves: every threshold rule, in one place.

- The rule: a frame is an anomaly when its score is *above* its threshold (``is_anomaly``).
- The line: a score means something only on its (model version, method) scale, so a
  threshold is kept per (source, model version, method): the source's own, else the default
  registered with the checkpoint for that method. The pipeline judges new results and the
  dashboard shows them by the same ``effective_thresholds``.
- Moving it: `inspector threshold set` and the dashboard both call ``set_threshold``, which
  records who changed it, from what and why, and judges that source's stored results again.
- Choosing it from operators' labels: confusion counts, ROC / PR curves, the threshold for a
  target recall (calibration), by the same rule.
The SQL behind them is store/queries.py's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from inspector.store import queries
from inspector.store.models import Model, ThresholdChange


class ThresholdError(ValueError):
    """A threshold that cannot be set: unknown model, or not a finite number."""


def is_anomaly(score: float, threshold: float) -> bool:
    """The rule (its SQL form: queries.rejudge_results)."""
    return score > threshold


# --- the line --------------------------------------------------------------------------------


def resolve_model(session: Session, model_version: str | None, method: str | None = None) -> Model:
    """The model (version and method) a threshold is for: the version named, else the latest
    registered; the method named, which a version registered with several needs."""
    registered = queries.models_of(session, model_version) if model_version else queries.list_models(session)
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


def operating(samples: list[Sample], threshold: float) -> Operating:
    tp = sum(1 for s, label in samples if label == "anomaly" and is_anomaly(s, threshold))
    fp = sum(1 for s, label in samples if label == "normal" and is_anomaly(s, threshold))
    anomalies = sum(1 for _, label in samples if label == "anomaly")
    return Operating(threshold, tp, fp, anomalies - tp, len(samples) - anomalies - fp)


def curve(samples: list[Sample]) -> list[Operating]:
    """Operating points from "flag nothing" to "flag everything", one per distinct score."""
    scores = sorted({s for s, _ in samples}, reverse=True)
    if not scores:
        return []
    cuts = [math.inf] + [math.nextafter(s, -math.inf) for s in scores]
    return [operating(samples, t) for t in cuts]


def roc_auc(points: list[Operating]) -> float:
    """Area under the ROC curve by trapezoids (points ordered by falling threshold)."""
    return sum((b.fpr - a.fpr) * (a.recall + b.recall) / 2 for a, b in zip(points, points[1:], strict=False))


def threshold_for_recall(samples: list[Sample], target: float) -> float | None:
    """The highest threshold whose recall on labelled anomalies is at least ``target``.

    It sits halfway between the lowest anomaly that must still be flagged and the next
    lower labelled score, so small score noise does not flip the labelled frames.
    """
    anomalies = sorted(s for s, label in samples if label == "anomaly")
    if not anomalies:
        return None
    missable = math.floor((1 - target) * len(anomalies) + 1e-9)
    lowest_kept = anomalies[min(missable, len(anomalies) - 1)]
    below = [s for s, _ in samples if s < lowest_kept]
    if below:
        return (max(below) + lowest_kept) / 2
    return math.nextafter(lowest_kept, -math.inf)
