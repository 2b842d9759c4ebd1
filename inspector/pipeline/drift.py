"""Drift: are a source's frames still what its live model was trained on?

The test, per source: the live model's latest ``drift.window`` scores against the scores of its
held-out normal frames (recorded by training in its checkpoint), by a two-sample
Kolmogorov-Smirnov test. On both sides a score above the source's threshold counts as the
threshold: the frames judged normal are compared value by value, a flagged frame only as
"above". So a real defect moves the test by its share of the window at most, while a drift that
pushes every frame over the threshold (a lamp that dies) still shows, as a mass at the top.

The source is **drifting** when the p-value is below ``drift.alpha`` *and* the distance D (the
largest gap between the two cumulative distributions) is at least ``drift.min_effect``: the
second keeps a difference too small to matter from raising an alarm on a long-running camera
with a large window. It is clear again once the p-value rises above ``drift.clear_alpha``.
Entering the state records a drift event, queued for every alert channel in the same commit
(pipeline/alerts.py delivers it); the state is the dashboard's banner, a Prometheus gauge and
a problem of `inspector status`.

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
from inspector.store.models import DriftState, utcnow

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
    window: np.ndarray,
    reference: np.ndarray,
    threshold: float,
    settings: DriftSettings,
    drifting: bool = False,
) -> Verdict:
    """The test on a window of scores (``drifting``: the source's state before, for the hysteresis)."""
    if len(window) < settings.min_frames:
        return Verdict(
            len(window), None, None, False, f"{len(window)} scores, fewer than {settings.min_frames}"
        )
    statistic, p_value = ks_two_sample(np.minimum(window, threshold), np.minimum(reference, threshold))
    if drifting:
        still = p_value <= settings.clear_alpha
    else:
        still = p_value < settings.alpha and statistic >= settings.min_effect
    return Verdict(len(window), statistic, p_value, still)


def reference_scores(config: dict | None, method: str) -> np.ndarray | None:
    """The held-out normal frames' scores its checkpoint recorded (models.config), if any."""
    scores = ((config or {}).get("metadata") or {}).get("heldout_scores", {}).get(method)
    return None if not scores else np.asarray(scores, dtype=np.float64)


def _check_source(session: Session, settings: Settings, source: str) -> DriftState | None:
    model = store.latest_live_model(session, source)
    if model is None:
        return None
    previous = session.get(DriftState, source)
    was_drifting = bool(previous and previous.drifting and (previous.model_version, previous.method) == model)
    window = np.asarray(store.recent_scores(session, source, model, settings.drift.window), dtype=np.float64)
    reference = reference_scores(store.model_config(session, model), model[1])
    try:
        threshold = effective_threshold(session, *model, source)
    except ThresholdError as exc:
        verdict = Verdict(len(window), None, None, False, str(exc))
    else:
        if reference is None:
            verdict = Verdict(len(window), None, None, False, "its checkpoint records no held-out scores")
        else:
            verdict = judge(window, reference, threshold, settings.drift, was_drifting)
    now = utcnow()
    state = previous or DriftState(source=source)
    if verdict.drifting and not was_drifting:
        store.record_event(
            session,
            settings.alerts.channels,
            source,
            model,
            verdict.statistic,
            verdict.p_value,
            verdict.frames,
        )
        log.warning(
            "drift on %s: its latest %d scores differ from %s's held-out normal frames (KS D %.2f, p %.2g)",
            source,
            verdict.frames,
            model[0],
            verdict.statistic,
            verdict.p_value,
            extra={"source": source, "model_version": model[0]},
        )
        state.since = now
    elif was_drifting and not verdict.drifting:
        log.info("drift on %s is over (KS D %.2f, p %.2g)", source, verdict.statistic, verdict.p_value)
    if not verdict.drifting:
        state.since = None
    state.model_version, state.method = model
    state.checked_at, state.frames = now, verdict.frames
    state.statistic, state.p_value = verdict.statistic, verdict.p_value
    state.drifting, state.note = verdict.drifting, verdict.note
    session.add(state)
    return state


def check(settings: Settings) -> list[DriftState]:
    """Test every source that has live results now, each in a transaction of its own that holds
    its state row (on PostgreSQL), so two watchers' monitors record a drift once."""
    if not settings.drift.enabled:
        return []
    with session_scope(settings.db_url) as session:
        sources = store.live_sources(session)
    checked = []
    for source in sources:
        with session_scope(settings.db_url) as session:
            session.get(DriftState, source, with_for_update=True)
            state = _check_source(session, settings, source)
        if state is not None:
            checked.append(state)
    return checked
