"""Which model scores a source, which is tried beside it, and how that changes: the registry's rules.

- Roles, per source: the **live** model (its verdicts alert and fill the review queue), at most
  one **candidate** (it scores the same frames in the same commit, in shadow: stored, never
  alerted, never queued for review) and **retired** ones (kept, so a rollback can bring one back).
  A source without a live model of its own takes the one registered for ``*`` (every source),
  else the configured model (``model_path``), as before the registry existed.
- Changes: register, promote, rollback, retire, each recorded with who, why and when. A rollback
  undoes the promotion that made the live model live, so rolling back twice walks back two
  promotions (ending at the configured model), never to and fro.
- Thresholds at a promotion: the promoted model is judged, for each source it takes over, at the
  operating point of the model that judged it until then (thresholds.carry_over, an audit row
  of its own), unless asked to keep its own; the models it replaces keep theirs untouched, so a
  rollback brings back the verdicts of before.
- Pick-up: scorers (the watcher's, Celery workers) read the registry again every
  ``registry.poll_seconds``, so a promotion or rollback reaches them without a restart.
The SQL is store/registry.py's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy.orm import Session

from inspector.config import Settings
from inspector.pipeline.thresholds import Carried, carry_over, kept
from inspector.store import queries, review
from inspector.store import registry as store
from inspector.store.db import session_scope
from inspector.store.models import ALL_SOURCES, ModelChange, ModelRole
from inspector.store.registry import Assigned, Key

if TYPE_CHECKING:
    from inspector.detector import Detector


class RegistryError(ValueError):
    """A registry change that cannot be made: unknown model, no candidate, nothing to roll back."""


def _model(session: Session, version: str, method: str | None) -> Key:
    """(version, method) of a registered model; the method may be left out where the version has one."""
    registered = queries.models_of(session, version)
    if method is not None:
        registered = [m for m in registered if m.method == method]
    if not registered:
        with_method = "" if method is None else f" with method {method!r}"
        raise RegistryError(f"unknown model {version!r}{with_method}: register its checkpoint first")
    if len(registered) > 1:
        names = ", ".join(m.method for m in registered)
        raise RegistryError(f"model {version} scores with several methods ({names}): name one")
    return registered[0].version, registered[0].method


def _key(row: ModelRole) -> Key:
    return row.model_version, row.method


def _check(source: str, who: str) -> None:
    if not source or not who:
        raise RegistryError("a registry change needs a source and the name of who made it")


def register(
    session: Session,
    source: str,
    version: str,
    method: str | None,
    who: str,
    reason: str | None = None,
    live: bool = False,
) -> ModelChange:
    """Make a registered model (version and method) the source's candidate, or with ``live`` its
    live model at once (a promotion that keeps the model's own threshold: it has scored nothing
    beside the live one to carry an operating point over from). A candidate it replaces is retired."""
    _check(source, who)
    model = _model(session, version, method)
    if live:
        return promote(session, source, *model, who=who, reason=reason, carry=False).change
    current = store.role_of(session, source, *model)
    if current is not None and current.role == "live":
        raise RegistryError(f"{model[0]} ({model[1]}) is already the live model of {source}")
    replaced = store.holder(session, source, "candidate")
    if replaced is not None and _key(replaced) != model:
        store.set_role(session, source, *_key(replaced), "retired")
        store.record_change(
            session,
            source=source,
            action="retire",
            model=_key(replaced),
            role="retired",
            who=who,
            reason=f"replaced by candidate {model[0]} ({model[1]})",
        )
    store.set_role(session, source, *model, "candidate")
    return store.record_change(
        session, source=source, action="register", model=model, role="candidate", who=who, reason=reason
    )


def register_file(
    session: Session,
    detector: Detector,
    path: str | Path,
    source: str,
    who: str,
    reason: str | None = None,
    live: bool = False,
) -> ModelChange:
    """Register a loaded checkpoint file (its version and method, with the method's default
    threshold) and give it a role for a source (:func:`register`). A version registered before
    is read from this file from now on."""
    queries.ensure_model(
        session,
        version=detector.version,
        method=detector.method,
        path=str(Path(path).resolve()),
        default_threshold=detector.threshold,
        config=detector.checkpoint.description(),
        update_path=True,
    )
    return register(session, source, detector.version, detector.method, who, reason, live)


THRESHOLD_CHOICES = {"carry-over": True, "keep": False}  # a promotion's threshold: the CLI's and form's names


class Promotion(NamedTuple):
    change: ModelChange
    thresholds: list[Carried]  # the promoted model's threshold for each source it took over

    def lines(self, most: int | None = None) -> list[str]:
        """What the thresholds became, for the first ``most`` sources (a flash message is small)."""
        lines = [carried.line() for carried in self.thresholds[:most]]
        if most is not None and len(self.thresholds) > most:
            lines.append(f"and {len(self.thresholds) - most} more sources: inspector threshold list")
        return lines


def _taken_over(session: Session, source: str) -> list[str]:
    """The sources a promotion for ``source`` gives a new live model: for ``*``, every source seen
    without a live model of its own."""
    if source != ALL_SOURCES:
        return [source]
    return [s for s in review.sources(session) if store.holder(session, s, "live") is None]


def promote(
    session: Session,
    source: str,
    version: str | None = None,
    method: str | None = None,
    *,
    who: str,
    reason: str | None = None,
    carry: bool = True,
) -> Promotion:
    """Make a model the source's live one (by default its candidate); the live one before it is
    retired, and named in the audit row so that a rollback can bring it back. With ``carry``, the
    promoted model's threshold for each source it takes over is set at the operating point of the
    model that judged that source until now (thresholds.carry_over); else it keeps its own."""
    _check(source, who)
    if version is None:
        candidate = store.holder(session, source, "candidate")
        if candidate is None:
            raise RegistryError(f"{source} has no candidate to promote")
        model = _key(candidate)
    else:
        model = _model(session, version, method)
    live = store.holder(session, source, "live")
    if live is not None and _key(live) == model:
        raise RegistryError(f"{model[0]} ({model[1]}) is already the live model of {source}")
    thresholds = [  # before the switch: carry_over reads which model judges the source now
        carry_over(session, where, model, who) if carry else kept(session, where, model, "as asked")
        for where in _taken_over(session, source)
    ]
    previous = None if live is None else _key(live)
    if previous is not None:
        store.set_role(session, source, *previous, "retired")
    store.set_role(session, source, *model, "live")
    change = store.record_change(
        session,
        source=source,
        action="promote",
        model=model,
        role="live",
        who=who,
        reason=reason,
        previous=previous,
    )
    return Promotion(change, thresholds)


def rollback(session: Session, source: str, who: str, reason: str | None = None) -> ModelChange:
    """Undo the promotion of the source's live model: the model live before it is live again (none
    named: the configured model), and this one is retired."""
    _check(source, who)
    live = store.holder(session, source, "live")
    if live is None:
        raise RegistryError(f"{source} has no live model of its own: nothing to roll back")
    promotion = store.last_promotion(session, source, *_key(live))
    if promotion is None:
        raise RegistryError(f"no promotion of {live.model_version} for {source} is recorded")
    restored = None
    if promotion.previous_version is not None and promotion.previous_method is not None:
        restored = (promotion.previous_version, promotion.previous_method)
    rolled_back = _key(live)
    store.set_role(session, source, *rolled_back, "retired")
    if restored is not None:
        store.set_role(session, source, *restored, "live")
    return store.record_change(
        session,
        source=source,
        action="rollback",
        model=restored,
        role="live",
        who=who,
        reason=reason,
        previous=rolled_back,
    )


def retire(
    session: Session, source: str, version: str, method: str | None, who: str, reason: str | None = None
) -> ModelChange:
    """Stop scoring a candidate (or keep a retired model retired); the live model cannot be retired:
    promote another or roll back."""
    _check(source, who)
    model = _model(session, version, method)
    row = store.role_of(session, source, *model)
    if row is None:
        raise RegistryError(f"{model[0]} ({model[1]}) holds no role for {source}")
    if row.role == "live":
        raise RegistryError(
            f"{model[0]} is the live model of {source}: promote another model or roll back instead"
        )
    store.set_role(session, source, *model, "retired")
    return store.record_change(
        session, source=source, action="retire", model=model, role="retired", who=who, reason=reason
    )


# --- what scorers use ----------------------------------------------------------------------------


class Lineup(NamedTuple):
    """The models that score a source's frames: live (None: the configured model) and candidate."""

    live: Assigned | None
    candidate: Assigned | None


def lineup_of(rows: Iterable[Assigned], source: str) -> Lineup:
    """A source's live and candidate models among registry rows: its own, else those of ``*``."""
    held = {(row.source, row.role): row for row in rows}

    def pick(role: str) -> Assigned | None:
        return held.get((source, role)) or held.get((ALL_SOURCES, role))

    return Lineup(pick("live"), pick("candidate"))


class _Rows(NamedTuple):
    read_at: float
    rows: list[Assigned]


_CACHE: dict[str, _Rows] = {}
_LOCK = threading.Lock()


def lineups(settings: Settings, sources: Iterable[str]) -> dict[str, Lineup]:
    """Each source's lineup, from the registry as read at most ``registry.poll_seconds`` ago."""
    url, now = settings.db_url, time.monotonic()
    with _LOCK:
        cached = _CACHE.get(url)
    if cached is None or now - cached.read_at >= settings.registry.poll_seconds:
        with session_scope(url) as session:
            cached = _Rows(now, store.assignments(session, roles=("live", "candidate")))
        with _LOCK:
            _CACHE[url] = cached
    return {source: lineup_of(cached.rows, source) for source in set(sources)}


def forget_cache() -> None:
    """Read the registry afresh at the next lookup (a test's or a command's own change)."""
    with _LOCK:
        _CACHE.clear()
