"""Schema migrations run from Python, so `inspector db upgrade` needs no alembic.ini on disk."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import inspector
from inspector.store.db import get_engine


def _migrations() -> Path:
    """The Alembic scripts: inside an installed wheel (inspector/migrations), else the
    checkout's migrations/ beside the package (an editable install maps it by import only)."""
    package = Path(inspector.__file__).resolve().parent
    installed = package / "migrations"
    return installed if (installed / "env.py").is_file() else package.parent / "migrations"


MIGRATIONS = _migrations()


class SchemaError(RuntimeError):
    """The database is not at the schema this code expects."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(url: str) -> None:
    """Bring an embedded SQLite file up to date; refuse a server database that lags behind.

    A server database is shared by many processes, so its migration is an explicit step
    (`inspector db upgrade`, the compose `migrate` service), never a side effect.
    """
    if url.startswith("sqlite"):
        upgrade(url)
        return
    current, head = current_revision(url), head_revision()
    if current != head:
        raise SchemaError(
            f"database schema is at {current or 'nothing'}, not {head}: run `inspector db upgrade`"
        )
