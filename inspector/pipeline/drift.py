"""Drift: are a source's frames still what its live model was trained on?

Two quantities are watched per source, each by the same test (``judge``):
- **score**: the live model's latest ``drift.window`` scores against the scores of its held-out
  normal frames (recorded by training in its checkpoint). On both sides a score above the
  source's threshold counts as the threshold: the frames judged normal are compared value by
  value, a flagged frame only as "above". So a real defect moves the test by its share of the
  window at most, while a drift that pushes every frame over the threshold (a lamp that dies)
  still shows, as a mass at the top.
- **level**: the same frames' levels (each frame's mean before flat-fielding, frames.Prepared)
  against the levels of the model's training frames (its checkpoint's ``frame_levels``).
  Flat-fielding divides most of a lamp's or an exposure's change away before the model sees
  it, and what is left can move the scores *towards* the held-out ones (glare, +40 grey levels,
  on magnetic tile: bench/results/drift.md); the level shows such a change plainly.

The test is a two-sample Kolmogorov-Smirnov test. A quantity is **drifting** when the p-value
is below ``drift.alpha`` *and* the distance D (the largest gap between the two cumulative
distributions) is at least ``drift.min_effect``: the second keeps a difference too small to
matter from raising an alarm on a long-running camera with a large window. It is clear again
once the p-value rises above ``drift.clear_alpha``. Entering the state records a drift event,
queued for every alert channel in the same commit (pipeline/alerts.py delivers it); the state
is the dashboard's banner, a Prometheus gauge and a problem of `inspector status`.

A check runs beside every watcher (``drift.every_seconds``) and with `inspector drift`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from inspector.config import DriftSettings, Settings
from inspector.pipeline.thresholds import ThresholdError, effective_threshold
from inspector.store import drift as store
from inspector.store.db import session_scope
from inspector.store.drift import Key
from inspector.store.models import DRIFT_WATCHED, DriftState, utcnow

log = logging.getLogger(__name__)


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) of the Kolmogorov distribution: the KS test's asymptotic p-value."""
    if lam < 0.2:
        return 1.0
    terms = [(-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101)]
    return min(1.0, max(0.0, 2 * sum(terms)))


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The two-sample KS distance D and its asymptotic p-value (as scipy's ks_2samp, method "asymp")."""
    a, b = np.sort(a), np.sort(b)
    values = np.concatenate([a, b])
    gap = np.abs(np.searchsorted(a, values, "right") / len(a) - np.searchsorted(b, values, "right") / len(b))
    distance = float(gap.max())
    return distance, kolmogorov_sf(math.sqrt(len(a) * len(b) / (len(a) + len(b))) * distance)


@dataclass(frozen=True)
class Verdict:
    frames: int
    statistic: float | None  # None: not tested (``note`` says why)
    p_value: float | None
    drifting: bool
    note: str = ""


def judge(
    window: np.ndarray, reference: np.ndarray, settings: DriftSettings, drifting: bool = False
) -> Verdict:
    """The test on a window of values (``drifting``: the quantity's state before, for the hysteresis)."""
    if len(window) < settings.min_frames:
        return Verdict(
            len(window), None, None, False, f"{len(window)} in the window, fewer than {settings.min_frames}"
        )
    statistic, p_value = ks_two_sample(window, reference)
    if drifting:
        still = p_value <= settings.clear_alpha
    else:
        still = p_value < settings.alpha and statistic >= settings.min_effect
    return Verdict(len(window), statistic, p_value, still)


def judge_scores(
    scores: np.ndarray,
    reference: np.ndarray,
    threshold: float,
    settings: DriftSettings,
    drifting: bool = False,
) -> Verdict:
    """The test on scores: on both sides, a score above the threshold counts as the threshold."""
    return judge(np.minimum(scores, threshold), np.minimum(reference, threshold), settings, drifting)


def reference_scores(config: dict | None, method: str) -> np.ndarray | None:
    """The held-out normal frames' scores its checkpoint recorded (models.config), if any."""
    scores = ((config or {}).get("metadata") or {}).get("heldout_scores", {}).get(method)
    return None if not scores else np.asarray(scores, dtype=np.float64)


def reference_levels(config: dict | None) -> np.ndarray | None:
    """The training frames' levels its checkpoint recorded (models.config), if any."""
    levels = ((config or {}).get("metadata") or {}).get("frame_levels")
    return None if not levels else np.asarray(levels, dtype=np.float64)


def _untested(window: np.ndarray, why: str) -> Verdict:
    return Verdict(len(window), None, None, False, why)


def _verdicts(
    session: Session, settings: Settings, source: str, model: Key, was: dict[str, bool]
) -> dict[str, Verdict]:
    """Each quantity's test on the source's latest live results (``was``: which drifted before)."""
    recent = store.recent_results(session, source, model, settings.drift.window)
    scores = np.asarray([score for score, _ in recent], dtype=np.float64)
    levels = np.asarray([level for _, level in recent if level is not None], dtype=np.float64)
    config = store.model_config(session, model)
    reference = reference_scores(config, model[1])
    try:
        threshold = effective_threshold(session, *model, source)
    except ThresholdError as exc:
        score = _untested(scores, str(exc))
    else:
        score = (
            _untested(scores, "its checkpoint records no held-out scores")
            if reference is None
            else judge_scores(scores, reference, threshold, settings.drift, was["score"])
        )
    reference = reference_levels(config)
    level = (
        _untested(levels, "its checkpoint records no frame levels (trained before inspector recorded them)")
        if reference is None
        else judge(levels, reference, settings.drift, was["level"])
    )
    return {"score": score, "level": level}


def _check_source(session: Session, settings: Settings, source: str) -> list[DriftState]:
    model = store.latest_live_model(session, source)
    if model is None:
        return []
    previous = {state.watched: state for state in store.states(session, source, lock=True)}
    was = {
        watched: bool(state and state.drifting and (state.model_version, state.method) == model)
        for watched in DRIFT_WATCHED
        for state in [previous.get(watched)]
    }
    now = utcnow()
    checked = []
    for watched, verdict in _verdicts(session, settings, source, model, was).items():
        state = previous.get(watched) or DriftState(source=source, watched=watched)
        if verdict.drifting and not was[watched]:
            store.record_event(
                session,
                settings.alerts.channels,
                source,
                watched,
                model,
                verdict.statistic,
                verdict.p_value,
                verdict.frames,
            )
            log.warning(
                "drift on %s: its latest %d %s differ from %s's %s (KS D %.2f, p %.2g)",
                source,
                verdict.frames,
                DRIFT_WATCHED[watched][0],
                model[0],
                DRIFT_WATCHED[watched][1],
                verdict.statistic,
                verdict.p_value,
                extra={"source": source, "model_version": model[0]},
            )
            state.since = now
        elif was[watched] and not verdict.drifting:
            log.info(
                "drift of %s's %s is over (KS D %s, p %s)",
                source,
                DRIFT_WATCHED[watched][0],
                verdict.statistic,
                verdict.p_value,
            )
        if not verdict.drifting:
            state.since = None
        state.model_version, state.method = model
        state.checked_at, state.frames = now, verdict.frames
        state.statistic, state.p_value = verdict.statistic, verdict.p_value
        state.drifting, state.note = verdict.drifting, verdict.note
        session.add(state)
        checked.append(state)
    return checked


def check(settings: Settings) -> list[DriftState]:
    """Test every source that has live results now, each in a transaction of its own that holds
    its state rows (on PostgreSQL), so two watchers' monitors record a drift once."""
    if not settings.drift.enabled:
        return []
    with session_scope(settings.db_url) as session:
        sources = store.live_sources(session)
    checked = []
    for source in sources:
        with session_scope(settings.db_url) as session:
            checked += _check_source(session, settings, source)
    return checked
