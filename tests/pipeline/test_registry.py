"""The model registry: roles per source, promotions and rollbacks with their audit trail, what
scorers see (a source's own rows, else those of *), and `inspector model ...` as typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.exc import IntegrityError

from inspector.cli import main
from inspector.config import Settings
from inspector.detector import Checkpoint
from inspector.pipeline import registry
from inspector.pipeline.registry import RegistryError
from inspector.pipeline.thresholds import resolve_model
from inspector.store import migrate, queries
from inspector.store import registry as store
from inspector.store.db import session_scope
from inspector.store.models import ModelRole
from tests.pipeline.conftest import settings_env


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
        promoted = registry.promote(session, "cam", who="ada", reason="fewer false alarms")
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
