"""Threshold rules: per (source, model version, method) an override, else that method's default."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import select

from inspector.pipeline.thresholds import (
    ThresholdError,
    effective_threshold,
    effective_thresholds,
    resolve_model,
    set_threshold,
    threshold_table,
)
from inspector.store.db import get_engine, session_scope
from inspector.store.models import Base, Result, ThresholdChange
from tests.store.rows import insert_result, register_frames, register_model


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 't.db'}"
    Base.metadata.create_all(get_engine(url))
    with session_scope(url) as session:
        for version in ("old", "new"):
            register_model(session, version=version)
    return url


def test_override_applies_to_its_source_and_model_only(url: str) -> None:
    with session_scope(url) as session:
        set_threshold(session, "cam1", "new", "vaegan-attn", 0.2, "ada", "too many misses")
        set_threshold(session, "cam1", "new", "vaegan-attn", 0.3, "bob")
    with session_scope(url) as session:
        assert effective_thresholds(session, "new", "vaegan-attn", ["cam1", "cam2"]) == {
            "cam1": 0.3,
            "cam2": 0.5,
        }
        assert effective_thresholds(session, "old", "vaegan-attn", ["cam1"]) == {"cam1": 0.5}
        assert effective_threshold(session, "new", "vaegan-attn", None) == 0.5
        changes = session.scalars(select(ThresholdChange).order_by(ThresholdChange.id)).all()
        assert [(c.new_value, c.changed_by, c.reason, c.method) for c in changes] == [
            (0.2, "ada", "too many misses", "vaegan-attn"),
            (0.3, "bob", None, "vaegan-attn"),
        ]
        assert changes[0].old_value == 0.5 and changes[1].old_value == 0.2
        table = [(v.model_version, v.method, v.source, v.value) for v in threshold_table(session)]
    assert table == [
        ("old", "vaegan-attn", "*", 0.5),
        ("new", "vaegan-attn", "*", 0.5),
        ("new", "vaegan-attn", "cam1", 0.3),
    ]


def test_a_method_switch_never_takes_another_methods_threshold(url: str) -> None:
    """The same checkpoint scored with another method registers that method's own default; an
    override set on one method's scale does not judge the other's scores."""
    with session_scope(url) as session:
        register_model(session, version="new", method="vaegan", default_threshold=0.04)
        register_model(session, version="new", method="vaegan", default_threshold=99.0)  # first one stays
        set_threshold(session, "cam1", "new", "vaegan-attn", 0.2, "ada")
    with session_scope(url) as session:
        assert effective_thresholds(session, "new", "vaegan", ["cam1"]) == {"cam1": 0.04}
        assert effective_thresholds(session, "new", "vaegan-attn", ["cam1"]) == {"cam1": 0.2}
        with pytest.raises(ThresholdError, match="not registered with method 'vae'"):
            effective_thresholds(session, "new", "vae", ["cam1"])


@pytest.mark.parametrize(
    ("model", "method", "value", "message"),
    [
        ("nope", "vaegan-attn", 0.1, "unknown model"),
        ("new", "vaegan", 0.1, "unknown model"),
        ("new", "vaegan-attn", math.nan, "finite"),
        ("new", "vaegan-attn", math.inf, "finite"),
    ],
)
def test_bad_changes_are_refused(url: str, model: str, method: str, value: float, message: str) -> None:
    with session_scope(url) as session, pytest.raises(ThresholdError, match=message):
        set_threshold(session, "cam1", model, method, value, "ada")


def test_the_latest_model_is_the_default_target(url: str) -> None:
    with session_scope(url) as session:
        assert (resolve_model(session, None).version, resolve_model(session, None).method) == (
            "new",
            "vaegan-attn",
        )
        assert resolve_model(session, "old").version == "old"
        with pytest.raises(ThresholdError, match="unknown model"):
            resolve_model(session, "missing")
        register_model(session, version="new", method="vaegan")
        with pytest.raises(ThresholdError, match="several methods"):
            resolve_model(session, "new")
        assert resolve_model(session, "new", "vaegan").method == "vaegan"
        assert resolve_model(session, None, "vaegan-attn").version == "new"


def test_a_change_judges_that_sources_stored_results_of_that_method_again(url: str) -> None:
    with session_scope(url) as session:
        register_model(session, version="new", method="vaegan")
        ids = register_frames(session, 2, source="cam1") + register_frames(session, 1, source="cam2", first=2)
        for fid, score in zip(ids, [0.3, 0.7, 0.3], strict=True):
            for method in ("vaegan-attn", "vaegan"):
                insert_result(
                    session,
                    frame_id=fid,
                    model_version="new",
                    method=method,
                    score=score,
                    threshold=0.5,
                    is_anomaly=score > 0.5,
                )
    with session_scope(url) as session:
        change, flipped = set_threshold(session, "cam1", "new", "vaegan-attn", 0.2, "ada")
    assert (change.old_value, change.new_value, flipped) == (0.5, 0.2, 1)
    with session_scope(url) as session:
        verdicts = {
            (r.frame.path, r.method): (r.is_anomaly, r.threshold) for r in session.scalars(select(Result))
        }
    assert verdicts == {
        ("/in/0.png", "vaegan-attn"): (True, 0.2),
        ("/in/1.png", "vaegan-attn"): (True, 0.2),
        ("/in/2.png", "vaegan-attn"): (False, 0.5),
        ("/in/0.png", "vaegan"): (False, 0.5),  # the other method's scale is left alone
        ("/in/1.png", "vaegan"): (True, 0.5),
        ("/in/2.png", "vaegan"): (False, 0.5),
    }
