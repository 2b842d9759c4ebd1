"""64-bit ids on PostgreSQL for what grows with the frames: frames, results, their maps, reviews and
alerts (SQLite's INTEGER ids are 64-bit already: nothing to do there).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (  # (table, column): the ids, then the foreign keys naming them
    ("frames", "id"),
    ("results", "id"),
    ("reviews", "id"),
    ("alert_outbox", "id"),
    ("results", "frame_id"),
    ("reviews", "frame_id"),
    ("result_maps", "result_id"),
    ("alert_outbox", "result_id"),
)
SEQUENCES = ("frames_id_seq", "results_id_seq", "reviews_id_seq", "alert_outbox_id_seq")


def _retype(to: sa.types.TypeEngine, sequence_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=to)
    for sequence in SEQUENCES:
        op.execute(f"ALTER SEQUENCE {sequence} AS {sequence_type}")


def upgrade() -> None:
    _retype(sa.BigInteger(), "bigint")


def downgrade() -> None:
    _retype(sa.Integer(), "integer")
