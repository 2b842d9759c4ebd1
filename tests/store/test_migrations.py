"""The Alembic history builds exactly the schema of store/models.py, up and down, on both databases."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

import inspector
from inspector.cli import main
from inspector.store import migrate
from inspector.store.models import Base

TABLES = {
    *("frames", "models", "results", "result_maps", "reviews", "thresholds", "threshold_changes"),
    *("heartbeats", "alert_outbox", "alert_state", "model_roles", "model_changes", "web_sessions"),
    "duplicates",
}


def _check_round_trip(url: str) -> None:
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            names = inspect(connection)
            assert TABLES <= set(names.get_table_names())
            uniques = {u["name"] for u in names.get_unique_constraints("results")}
            assert "uq_results_frame_model_method" in uniques
        assert migrate.current_revision(url) == migrate.head_revision()
        migrate.downgrade(url, "base")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(url) is None
        migrate.upgrade(url)  # and up again from an emptied database
        assert migrate.current_revision(url) == migrate.head_revision()
    finally:
        engine.dispose()


def _check_method_identity_migration(url: str) -> None:
    """Revision 0005 on rows of 0004: results, thresholds and changes take their model's method; a
    standardised vaegan's methods become vaegan-z's; a downgrade is refused while a version
    scores with several methods, and restores the old names."""
    migrate.upgrade(url, "0004")
    engine = create_engine(url)
    models = sa.Table("models", sa.MetaData(), autoload_with=engine)  # its JSON column, either database
    plain = {"model": {"family": "vaegan", "standardise": False}}
    fixed = {"model": {"family": "vaegan", "standardise": True}}
    at = {"t": datetime(2026, 11, 1)}
    try:
        with engine.begin() as c:
            c.execute(
                models.insert(),
                [
                    {
                        "version": v,
                        "path": "m.pt",
                        "method": "vaegan-attn",
                        "default_threshold": 0.5,
                        "config": cfg,
                    }
                    | {"created_at": at["t"]}
                    for v, cfg in (("plain", plain), ("fixed", fixed))
                ],
            )
            c.execute(
                text(
                    "INSERT INTO frames (content_hash, path, source, size_bytes, status, attempts, "
                    "landed_at, registered_at, updated_at) "
                    "VALUES ('h', 'f.png', 'cam', 1, 'done', 1, :t, :t, :t)"
                ),
                at,
            )
            for version in ("plain", "fixed"):
                c.execute(
                    text(
                        "INSERT INTO results (frame_id, model_version, score, threshold, is_anomaly, "
                        "created_at) VALUES (1, :v, 0.7, 0.5, true, :t)"
                    ),
                    {"v": version, **at},
                )
            c.execute(
                text(
                    "INSERT INTO thresholds (source, model_version, value, updated_by, updated_at) "
                    "VALUES ('cam', 'fixed', 0.6, 'ada', :t)"
                ),
                at,
            )
            c.execute(
                text(
                    "INSERT INTO threshold_changes (source, model_version, old_value, new_value, changed_by, "
                    "changed_at) VALUES ('cam', 'fixed', 0.5, 0.6, 'ada', :t)"
                ),
                at,
            )
        migrate.upgrade(url)
        with engine.connect() as c:
            for query in ("SELECT version, method FROM models", "SELECT model_version, method FROM results"):
                rows = [tuple(row) for row in c.execute(text(query))]
                assert sorted(rows) == [("fixed", "vaegan-attn-z"), ("plain", "vaegan-attn")]
            for table in ("thresholds", "threshold_changes"):
                assert c.execute(text(f"SELECT method FROM {table}")).scalar_one() == "vaegan-attn-z"
        with engine.begin() as c:  # the same checkpoint scored with another method: a result of its own
            c.execute(
                text(
                    "INSERT INTO models (version, method, path, default_threshold, config, created_at) "
                    "VALUES ('plain', 'vaegan', 'm.pt', 0.04, '{}', :t)"
                ),
                at,
            )
            c.execute(
                text(
                    "INSERT INTO results (frame_id, model_version, method, score, threshold, is_anomaly, "
                    "created_at) VALUES (1, 'plain', 'vaegan', 0.03, 0.04, false, :t)"
                ),
                at,
            )
        with pytest.raises(RuntimeError, match="model plain is registered with several methods"):
            migrate.downgrade(url, "0004")
        with engine.begin() as c:
            c.execute(text("DELETE FROM results WHERE method = 'vaegan'"))
            c.execute(text("DELETE FROM models WHERE method = 'vaegan'"))
        migrate.downgrade(url, "0004")
        with engine.connect() as c:
            rows = [tuple(row) for row in c.execute(text("SELECT version, method FROM models"))]
            assert sorted(rows) == [("fixed", "vaegan-attn"), ("plain", "vaegan-attn")]
    finally:
        engine.dispose()


def _check_drift_levels_migration(url: str) -> None:
    """Revision 0012 on rows of 0011: the drift state and events there are become the scores'; a
    downgrade drops the levels' own (and their alerts), keeping the scores'."""
    migrate.upgrade(url, "0011")
    engine = create_engine(url)
    at = {"t": datetime(2026, 11, 30)}
    state = "INSERT INTO drift_state (source, {}model_version, method, checked_at, frames, drifting, note) "
    event = (
        "INSERT INTO drift_events (source, {}model_version, method, statistic, p_value, frames, detected_at) "
    )
    try:
        with engine.begin() as c:
            c.execute(text(state.format("") + "VALUES ('cam', 'v', 'm', :t, 200, true, '')"), at)
            c.execute(text(event.format("") + "VALUES ('cam', 'v', 'm', 0.5, 1e-6, 200, :t)"), at)
        migrate.upgrade(url)
        with engine.begin() as c:
            assert [tuple(r) for r in c.execute(text("SELECT source, watched FROM drift_state"))] == [
                ("cam", "score")
            ]
            assert c.execute(text("SELECT watched FROM drift_events")).scalars().all() == ["score"]
            c.execute(
                text(state.format("watched, ") + "VALUES ('cam', 'level', 'v', 'm', :t, 200, true, '')"), at
            )
            c.execute(
                text(event.format("watched, ") + "VALUES ('cam', 'level', 'v', 'm', 0.6, 1e-9, 200, :t)"), at
            )
            c.execute(
                text(
                    "INSERT INTO alert_outbox (drift_event_id, channel, source, created_at, attempts) "
                    "SELECT id, 'webhook', 'cam', :t, 0 FROM drift_events"
                ),
                at,
            )
        migrate.downgrade(url, "0011")
        with engine.begin() as c:
            assert c.execute(text("SELECT source FROM drift_state")).scalars().all() == ["cam"]
            assert c.execute(text("SELECT statistic FROM drift_events")).scalars().all() == [0.5]
            assert c.execute(text("SELECT count(*) FROM alert_outbox")).scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_upgrade_matches_models_and_downgrades(tmp_path: Path) -> None:
    _check_round_trip(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_sqlite_method_identity_migration(tmp_path: Path) -> None:
    _check_method_identity_migration(f"sqlite:///{tmp_path / 'old.db'}")


def test_sqlite_drift_levels_migration(tmp_path: Path) -> None:
    _check_drift_levels_migration(f"sqlite:///{tmp_path / 'drift.db'}")


@pytest.mark.services
def test_postgresql_drift_levels_migration(pg_url: str) -> None:
    _check_drift_levels_migration(pg_url)


@pytest.mark.services
def test_postgresql_upgrade_matches_models_and_downgrades(pg_url: str) -> None:
    _check_round_trip(pg_url)


@pytest.mark.services
def test_postgresql_method_identity_migration(pg_url: str) -> None:
    _check_method_identity_migration(pg_url)
    migrate.upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        with engine.connect() as connection:  # maps compressed by LZ4 (this server has it)
            assert _map_storage(connection) == ("x", "l")
        migrate.downgrade(pg_url, "0012")
        with engine.connect() as connection:  # out of line, uncompressed, as before
            assert _map_storage(connection) == ("e", "")
    finally:
        engine.dispose()


def _map_storage(connection: sa.Connection) -> tuple[str, str]:
    """How PostgreSQL stores result_maps.png: (storage, compression) as pg_attribute says."""
    where = "attrelid = 'result_maps'::regclass AND attname = 'png'"
    row = connection.execute(text(f"SELECT attstorage, attcompression FROM pg_attribute WHERE {where}")).one()
    return row.attstorage, row.attcompression


def test_ensure_schema_migrates_an_embedded_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auto.db'}"
    migrate.ensure_schema(url)  # embedded SQLite: brought up to date
    assert migrate.current_revision(url) == migrate.head_revision()


@pytest.mark.services
def test_ensure_schema_refuses_an_unmigrated_postgresql(pg_url: str) -> None:
    with pytest.raises(migrate.SchemaError, match="inspector db upgrade"):
        migrate.ensure_schema(pg_url)


def test_db_commands(tmp_path: Path) -> None:
    env = {"INSPECTOR_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    head = migrate.head_revision()
    result = runner.invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert f"revision {head}" in result.output
    assert f"current {head}" in runner.invoke(main, ["db", "current"], env=env).output
    result = runner.invoke(main, ["db", "downgrade"], env=env)  # one step
    assert result.exit_code == 0 and f"revision {head}" not in result.output
    result = runner.invoke(main, ["db", "downgrade", "base"], env=env)
    assert result.exit_code == 0 and "revision base" in result.output


def test_alembic_command_line_takes_the_url(tmp_path: Path) -> None:
    """`alembic -x url=... upgrade head` from the repository root works too (the compose step's twin)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{tmp_path / 'x.db'}"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={url}", "upgrade", "head"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    assert migrate.current_revision(url) == migrate.head_revision()


def test_an_installed_package_finds_its_own_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel carries the scripts as inspector/migrations; a checkout keeps them beside the package."""
    assert migrate.MIGRATIONS == Path(migrate.__file__).resolve().parents[2] / "migrations"
    package = tmp_path / "site-packages" / "inspector"
    (package / "migrations").mkdir(parents=True)
    (package / "migrations" / "env.py").write_text("")
    monkeypatch.setattr(inspector, "__file__", str(package / "__init__.py"))
    assert migrate._migrations() == package / "migrations"
