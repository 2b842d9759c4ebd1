"""Maps compressed by LZ4 on PostgreSQL (result_maps.png), no longer stored uncompressed.

Revision 0004 stored them out of line uncompressed: pglz had doubled their insert time then.
The pipeline now writes uncompressed PNG (fast to encode), which LZ4 shrinks by 43%, and the
server spends less CPU storing a frame's maps so than writing them whole (``python -m
bench.map_storage``: bench/results/map_storage.md). Rows stored before keep their form. A server
without LZ4 (before PostgreSQL 14, or built without it) keeps them uncompressed. SQLite
compresses nothing: nothing to do.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_PNG = "ALTER COLUMN png"


def _has_lz4(bind: sa.Connection) -> bool:
    """Whether this server compresses with LZ4 (its settings list the method only where it can)."""
    allowed = bind.scalar(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    )
    return allowed is not None and "lz4" in allowed


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and _has_lz4(bind):
        op.execute(f"ALTER TABLE result_maps {_PNG} SET STORAGE EXTENDED, {_PNG} SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE result_maps {_PNG} SET STORAGE EXTERNAL, {_PNG} SET COMPRESSION default")
