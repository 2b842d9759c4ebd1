"""The model registry: roles per source, promotions and rollbacks with their audit trail, what
scorers see (a source's own rows, else those of *), and `inspector model ...` as typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inspector.cli import main
from inspector.config import Settings
from inspector.detector import Checkpoint
from inspector.pipeline import registry
from inspector.pipeline.registry import RegistryError
from inspector.pipeline.thresholds import effective_thresholds, resolve_model, set_threshold
from inspector.store import migrate, queries
from inspector.store import registry as store
from inspector.store.db import session_scope
from inspector.store.models import Frame, ModelRole, Result, Review, ThresholdChange, utcnow
from tests.pipeline.conftest import settings_env
from tests.store.rows import register_frames


def _models(url: str, *versions: str, method: str = "vaegan-attn") -> None:
    with session_scope(url) as session:
        for version in versions:
            queries.ensure_model(
                session,
                version=version,
                method=method,
                path=f"/m/{version}.pt",
                default_threshold=0.5,
                config={},
            )


def _roles(url: str, source: str) -> dict[str, str]:
    with session_scope(url) as session:
        return {row.version: row.role for row in store.assignments(session, source) if row.source == source}


def _check_rules(url: str) -> None:
    _models(url, "a", "b", "c")
    with session_scope(url) as session:
        first = registry.register(session, "cam", "a", None, "ada", "first model", live=True)
        assert (first.action, first.role, first.previous_version) == ("promote", "live", None)
        registry.register(session, "cam", "b", None, "ada", "retrained")
        registry.register(session, "cam", "c", "vaegan-attn", "bob")  # replaces b as the candidate
    assert _roles(url, "cam") == {"a": "live", "c": "candidate", "b": "retired"}
    with session_scope(url) as session:
        promoted = registry.promote(session, "cam", who="ada", reason="fewer false alarms").change
        assert (promoted.model_version, promoted.previous_version) == ("c", "a")
    assert _roles(url, "cam") == {"c": "live", "a": "retired", "b": "retired"}
    with session_scope(url) as session:
        registry.promote(session, "cam", "b", who="ada")
        # Rolling back walks back through the promotions: b -> c -> a -> the configured model.
        for live_after in ("c", "a", None):
            change = registry.rollback(session, "cam", "bob", "too many misses")
            assert change.model_version == live_after
            live = store.holder(session, "cam", "live")
            assert (live.model_version if live else None) == live_after
        with pytest.raises(RegistryError, match="nothing to roll back"):
            registry.rollback(session, "cam", "bob")
        with pytest.raises(RegistryError, match="no candidate to promote"):
            registry.promote(session, "cam", who="bob")
        with pytest.raises(RegistryError, match="unknown model 'zzz'"):
            registry.register(session, "cam", "zzz", None, "bob")
        registry.promote(session, "cam", "a", who="ada")
        with pytest.raises(RegistryError, match="promote another model or roll back"):
            registry.retire(session, "cam", "a", None, "bob")
        with pytest.raises(RegistryError, match="already the live model"):
            registry.register(session, "cam", "a", None, "bob")
        with pytest.raises(RegistryError, match="name of who"):
            registry.register(session, "cam", "b", None, "")
        registry.register(session, "cam", "b", None, "ada")
        registry.retire(session, "cam", "b", None, "ada", "worse")
        trail = [(c.action, c.model_version, c.role, c.changed_by) for c in store.changes(session, "cam", 3)]
        assert trail == [
            ("retire", "b", "retired", "ada"),
            ("register", "b", "candidate", "ada"),
            ("promote", "a", "live", "ada"),
        ]
    # The database itself holds a source to one live model and one candidate.
    with pytest.raises(IntegrityError), session_scope(url) as session:
        session.add(ModelRole(source="cam", model_version="c", method="vaegan-attn", role="live"))
        session.flush()


def test_roles_promotions_rollbacks_and_their_audit(embedded: Settings) -> None:
    _check_rules(embedded.db_url)


@pytest.mark.services
def test_the_same_rules_on_postgresql(pg_url: str) -> None:
    migrate.upgrade(pg_url)
    _check_rules(pg_url)


def test_scorers_see_a_sources_own_models_else_those_of_every_source(embedded: Settings) -> None:
    url = embedded.db_url
    _models(url, "shared", "own", "trial")
    with session_scope(url) as session:
        registry.register(session, "*", "shared", None, "ada", live=True)
        registry.register(session, "cam-a", "own", None, "ada", live=True)
        registry.register(session, "*", "trial", None, "ada")
    registry.forget_cache()
    lineups = registry.lineups(embedded, ["cam-a", "cam-b"])
    assert (lineups["cam-a"].live.version, lineups["cam-a"].candidate.version) == ("own", "trial")
    assert (lineups["cam-b"].live.version, lineups["cam-b"].candidate.version) == ("shared", "trial")
    assert lineups["cam-b"].live.path == "/m/shared.pt"

    # A change is seen once the cached rows are registry.poll_seconds old: no restart.
    embedded.registry.poll_seconds = 3600
    with session_scope(url) as session:
        registry.retire(session, "*", "trial", None, "ada")
    assert registry.lineups(embedded, ["cam-b"])["cam-b"].candidate is not None  # still cached
    embedded.registry.poll_seconds = 0
    assert registry.lineups(embedded, ["cam-b"])["cam-b"].candidate is None


def test_model_commands(embedded: Settings, tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = settings_env(embedded) | {"INSPECTOR_WATCH__SOURCE": "cam"}
    runner = CliRunner()
    version = Checkpoint.load(tiny_checkpoint).version

    def run(*args: str) -> str:
        result = runner.invoke(main, ["model", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert "no model registered" in run("list")
    out = run("register", str(tiny_checkpoint), "--by", "ada", "--reason", "first try")
    assert f"cam: register {version} (vaegan-attn) -> candidate" in out
    out = run("promote", "--by", "ada", "--reason", "looks good")
    assert f"promote {version} (vaegan-attn) -> live (live before: the configured model" in out
    assert f"cam: {version} (vaegan-attn) judged at threshold" in out
    assert "its own kept: no other model has judged cam's frames" in out  # nothing scored yet
    listed = run("list")
    assert f"cam              live       {version}  vaegan-attn" in listed and "looks good" in listed
    out = run("register", str(tiny_checkpoint), "--method", "vaegan", "--source", "*", "--by", "bob")
    assert f"*: register {version} (vaegan) -> candidate" in out
    run("retire", version, "--method", "vaegan", "--source", "*", "--by", "bob")
    out = run("rollback", "--by", "bob", "--reason", "false alarms")
    assert f"rollback the configured model (model_path) -> live (live before: {version}" in out

    result = runner.invoke(main, ["model", "rollback", "--by", "bob"], env=env)
    assert result.exit_code == 1 and "nothing to roll back" in result.output
    result = runner.invoke(main, ["model", "retire", "nope", "--by", "bob"], env=env)
    assert result.exit_code == 1 and "unknown model 'nope'" in result.output
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    result = runner.invoke(main, ["model", "register", str(tmp_path / "bad.pt")], env=env)
    assert result.exit_code == 1 and "not a readable inspector model" in result.output
    out = run("promote", version, "--method", "vaegan-attn", "--threshold", "keep", "--by", "bob")
    assert "its own kept: as asked" in out
    result = runner.invoke(main, ["model", "promote", "--threshold", "guess"], env=env)
    assert result.exit_code == 2 and "'guess' is not one of 'carry-over', 'keep'" in result.output


def test_a_threshold_without_a_named_model_is_the_live_models_never_a_candidates(embedded: Settings) -> None:
    url = embedded.db_url
    _models(url, "configured", "trial")
    with session_scope(url) as session:
        registry.register(session, "cam", "trial", None, "ada")  # registered after the configured one
        assert resolve_model(session, None, None, "cam").version == "configured"
        registry.promote(session, "cam", who="ada")
        assert resolve_model(session, None, None, "cam").version == "trial"
        assert resolve_model(session, None, None, "elsewhere").version == "configured"
    _models(url, "other")
    with session_scope(url) as session:
        registry.register(session, "*", "other", None, "ada", live=True)
        assert resolve_model(session, None, None, "elsewhere").version == "other"


def _scored(session: Session, source: str, first: int, scores: list[tuple[float, float, str | None]]) -> None:
    """Frames of a source scored by "live" (at threshold 0.5) and by "cand" in shadow (at 5.0), each
    (live score, candidate score, label or None)."""
    frames = [
        {
            "content_hash": f"{first + i:064x}",
            "path": f"/in/{first + i}.png",
            "source": source,
            "size_bytes": 1,
            "landed_at": utcnow(),
        }
        for i in range(len(scores))
    ]
    ids = queries.insert_frames(session, frames)
    rows = []
    for frame, (live, cand, label) in zip(frames, scores, strict=True):
        frame_id = ids[frame["path"]]
        for version, score, threshold in (("live", live, 0.5), ("cand", cand, 5.0)):
            rows.append(
                {
                    "frame_id": frame_id,
                    "model_version": version,
                    "method": "vaegan-attn",
                    "score": score,
                    "threshold": threshold,
                    "is_anomaly": score > threshold,
                    "shadow": version == "cand",
                }
            )
        if label is not None:
            session.add(Review(frame_id=frame_id, label=label, reviewer="op"))
    queries.insert_results(session, rows)


def _threshold_changes(session: Session) -> list[tuple[str, str, float | None, float, str]]:
    rows = session.scalars(select(ThresholdChange).order_by(ThresholdChange.id))
    return [(c.source, c.model_version, c.old_value, c.new_value, c.changed_by) for c in rows]


def _check_carry_over(url: str) -> None:
    """A promotion for every source (*): "cand" (its default 5.0, another scale) takes over cam, at
    the live model's recall on 25 reviewed anomalies; cam2, at its flag rate on 300 recent frames;
    cam3 (50 frames) keeps its default; cam4 has a live model of its own and is not taken over."""
    with session_scope(url) as session:
        queries.ensure_model(
            session, version="live", method="vaegan-attn", path="/m/l.pt", default_threshold=0.5, config={}
        )
        queries.ensure_model(
            session, version="cand", method="vaegan-attn", path="/m/c.pt", default_threshold=5.0, config={}
        )
        queries.ensure_model(
            session, version="own", method="vaegan-attn", path="/m/o.pt", default_threshold=0.5, config={}
        )
        registry.register(session, "*", "live", None, "ada", live=True)
        registry.register(session, "*", "cand", None, "ada")
        registry.register(session, "cam4", "own", None, "ada", live=True)
        # cam: recall 80% at cam's own live threshold 0.45 (60% at the default 0.5); the candidate's
        # anomalies score 10 … 34, its normals 2 … 9: 20 of 25 kept above 14.5.
        anomalies = [0.3] * 5 + [0.48] * 5 + [0.6] * 15
        _scored(
            session,
            "cam",
            0,
            [(live, 10.0 + i, "anomaly") for i, live in enumerate(anomalies)]
            + [(0.1, 2.0 + 0.5 * j, "normal") for j in range(15)],
        )
        set_threshold(session, "cam", "live", "vaegan-attn", 0.45, "ada", "recall 80%")
        # cam2: the live model flags 30 of 300 (10%); the candidate scores them 0 … 299; 5 reviewed.
        _scored(
            session,
            "cam2",
            100,
            [
                (0.7 if i % 10 == 0 else 0.2, float(i), "anomaly" if i < 50 and i % 10 == 0 else None)
                for i in range(300)
            ],
        )
        _scored(session, "cam3", 1000, [(0.7 if i % 2 else 0.2, float(i), None) for i in range(50)])
        register_frames(session, 3, "cam4", first=2000)
        before = _threshold_changes(session)

        # Opted out: the candidate keeps its own threshold everywhere, no threshold row changes.
        kept = registry.promote(session, "*", who="ada", carry=False)
        assert [(c.source, c.threshold, c.change) for c in kept.thresholds] == [
            ("cam", 5.0, None),
            ("cam2", 5.0, None),
            ("cam3", 5.0, None),
        ]
        assert kept.lines()[0] == "cam: cand (vaegan-attn) judged at threshold 5, its own kept: as asked"
        assert _threshold_changes(session) == before
        registry.rollback(session, "*", "ada")

        # Carried over (by default).
        promotion = registry.promote(session, "*", "cand", who="bob", reason="fewer false alarms")
        cam, cam2, cam3 = promotion.thresholds
        assert (cam.threshold, cam.change is not None) == (14.5, True)
        assert "carried over from live live (vaegan-attn) at 0.45: the same recall, 80.0%" in cam.how
        assert (cam2.threshold, cam2.change is not None) == (269.5, True)
        assert "the same flag rate, 10.0% (30 of 300)" in cam2.how and "5 reviewed anomalies" in cam2.how
        assert (cam3.threshold, cam3.change) == (5.0, None)
        assert "50 recent frames (25 flagged by the live model)" in cam3.how
        assert _threshold_changes(session) == [
            *before,
            ("cam", "cand", 5.0, 14.5, "bob"),
            ("cam2", "cand", 5.0, 269.5, "bob"),
        ]
        reasons = session.scalars(select(ThresholdChange.reason).order_by(ThresholdChange.id)).all()
        assert reasons[-1].startswith("at promotion, carried over from live live (vaegan-attn) at 0.5")
        flagged = (
            select(Frame.source, func.count())
            .join(Result, Result.frame_id == Frame.id)
            .where(Result.model_version == "cand", Result.is_anomaly.is_(True))
            .group_by(Frame.source)
        )
        assert dict(session.execute(flagged).all()) == {"cam": 20, "cam2": 30, "cam3": 44}
        assert effective_thresholds(session, "cand", "vaegan-attn", ["cam", "cam2", "cam3"]) == {
            "cam": 14.5,
            "cam2": 269.5,
            "cam3": 5.0,
        }

        # A rollback brings back the live model at the thresholds it had: they were never touched.
        registry.rollback(session, "*", "bob", "misses")
        assert store.holder(session, "*", "live").model_version == "live"
        assert effective_thresholds(session, "live", "vaegan-attn", ["cam", "cam2", "cam3"]) == {
            "cam": 0.45,
            "cam2": 0.5,
            "cam3": 0.5,
        }
        assert [c for c in _threshold_changes(session) if c[1] == "live"] == [
            ("cam", "live", 0.5, 0.45, "ada")
        ]


def test_a_promotion_carries_the_live_operating_point_over(embedded: Settings) -> None:
    _check_carry_over(embedded.db_url)


@pytest.mark.services
def test_the_carry_over_on_postgresql(pg_url: str) -> None:
    migrate.upgrade(pg_url)
    _check_carry_over(pg_url)
