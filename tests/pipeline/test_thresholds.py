"""Threshold rules: a per-source override for one model version, else the model's default."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import select

from inspector.pipeline.thresholds import (
    ThresholdError,
    effective_thresholds,
    resolve_model,
    set_threshold,
    threshold_table,
)
from inspector.store import queries
from inspector.store.db import get_engine, session_scope
from inspector.store.models import Base, ThresholdChange


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 't.db'}"
    Base.metadata.create_all(get_engine(url))
    with session_scope(url) as session:
        for version in ("old", "new"):
            queries.ensure_model(
                session, version=version, path="m.pt", method="vaegan-attn", default_threshold=0.5, config={}
            )
    return url


def test_override_applies_to_its_source_and_model_only(url: str) -> None:
    with session_scope(url) as session:
        set_threshold(session, "cam1", "new", 0.2, "ada", "too many misses")
        set_threshold(session, "cam1", "new", 0.3, "bob")
    with session_scope(url) as session:
        assert effective_thresholds(session, "new", 0.5, ["cam1", "cam2"]) == {"cam1": 0.3, "cam2": 0.5}
        assert effective_thresholds(session, "old", 0.5, ["cam1"]) == {"cam1": 0.5}
        changes = session.scalars(select(ThresholdChange).order_by(ThresholdChange.id)).all()
        assert [(c.new_value, c.changed_by, c.reason) for c in changes] == [
            (0.2, "ada", "too many misses"),
            (0.3, "bob", None),
        ]
        assert changes[1].old_value == 0.2
        table = [(v.model_version, v.source, v.value) for v in threshold_table(session)]
    assert table == [("old", "*", 0.5), ("new", "*", 0.5), ("new", "cam1", 0.3)]


@pytest.mark.parametrize(
    ("model", "value", "message"),
    [("nope", 0.1, "unknown model"), ("new", math.nan, "finite"), ("new", math.inf, "finite")],
)
def test_bad_changes_are_refused(url: str, model: str, value: float, message: str) -> None:
    with session_scope(url) as session, pytest.raises(ThresholdError, match=message):
        set_threshold(session, "cam1", model, value, "ada")


def test_the_latest_model_is_the_default_target(url: str) -> None:
    with session_scope(url) as session:
        assert resolve_model(session, None) == "new"
        assert resolve_model(session, "old") == "old"
        with pytest.raises(ThresholdError):
            resolve_model(session, "missing")


def test_a_change_judges_that_sources_stored_results_again(url: str) -> None:
    from datetime import datetime

    from inspector.store.models import Result

    with session_scope(url) as session:
        ids = queries.insert_frames(
            session,
            [
                {
                    "content_hash": f"h{i}",
                    "path": f"f{i}.png",
                    "source": source,
                    "size_bytes": 1,
                    "landed_at": datetime(2026, 1, 1),
                }
                for i, source in enumerate(["cam1", "cam1", "cam2"])
            ],
        )
        queries.insert_results(
            session,
            [
                {
                    "frame_id": ids[f"f{i}.png"],
                    "model_version": "new",
                    "score": score,
                    "threshold": 0.5,
                    "is_anomaly": score > 0.5,
                }
                for i, score in enumerate([0.3, 0.7, 0.3])
            ],
        )
    with session_scope(url) as session:
        change, flipped = set_threshold(session, "cam1", "new", 0.2, "ada")
    assert (change.old_value, change.new_value, flipped) == (0.5, 0.2, 1)
    with session_scope(url) as session:
        verdicts = {r.frame.path: (r.is_anomaly, r.threshold) for r in session.scalars(select(Result))}
    assert verdicts == {"f0.png": (True, 0.2), "f1.png": (True, 0.2), "f2.png": (False, 0.5)}
