"""Duplicates: files that landed with a registered frame's content, recorded so that the report
can count them (they are moved to archive/duplicates and never scored).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "duplicates",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("frame_id", BIG_ID, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("stored_path", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["frame_id"], ["frames.id"], name=op.f("fk_duplicates_frame_id_frames"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duplicates")),
    )
    op.create_index("ix_duplicates_seen", "duplicates", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_duplicates_seen", table_name="duplicates")
    op.drop_table("duplicates")
