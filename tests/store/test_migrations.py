"""The Alembic history builds exactly the schema of store/models.py, up and down, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    *("heartbeats", "alert_outbox", "alert_state"),
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
            assert "uq_results_frame_model" in uniques
        assert migrate.current_revision(url) == migrate.head_revision()
        migrate.downgrade(url, "base")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(url) is None
        migrate.upgrade(url)  # and up again from an emptied database
        assert migrate.current_revision(url) == migrate.head_revision()
    finally:
        engine.dispose()


def test_sqlite_upgrade_matches_models_and_downgrades(tmp_path: Path) -> None:
    _check_round_trip(f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.services
def test_postgresql_upgrade_matches_models_and_downgrades(pg_url: str) -> None:
    _check_round_trip(pg_url)
    engine = create_engine(pg_url)
    try:
        with engine.connect() as connection:  # maps are stored out of line, uncompressed
            where = "attrelid = 'result_maps'::regclass AND attname = 'png'"
            storage = connection.execute(text(f"SELECT attstorage FROM pg_attribute WHERE {where}"))
            assert storage.scalar() == "e"
    finally:
        engine.dispose()


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
