"""Operations: process heartbeats, the alert outbox and its per-source state, frames.pruned_at, and
indexes that let calibration read a model's labelled scores from indexes alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("frames") as batch:
        batch.add_column(sa.Column("pruned_at", sa.DateTime(), nullable=True))
    op.create_table(
        "heartbeats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("beat_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("doing", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeats")),
        sa.UniqueConstraint("kind", "host", "pid", name="uq_heartbeats_process"),
    )
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("delivery", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_alert_outbox_result_id_results"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
        sa.UniqueConstraint("result_id", "channel", name="uq_alert_outbox_result_channel"),
    )
    op.create_index("ix_alert_outbox_pending", "alert_outbox", ["sent_at", "channel", "source"])
    op.create_index(
        "ix_results_model_frame_score", "results", ["model_version", "method", "frame_id", "score"]
    )
    op.create_index("ix_reviews_frame_latest", "reviews", ["frame_id", "id", "label"])
    op.drop_index("ix_reviews_frame", table_name="reviews")  # the new one serves its lookups
    op.create_table(
        "alert_state",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("channel", "source", name=op.f("pk_alert_state")),
    )


def downgrade() -> None:
    op.create_index("ix_reviews_frame", "reviews", ["frame_id"])
    op.drop_index("ix_reviews_frame_latest", table_name="reviews")
    op.drop_index("ix_results_model_frame_score", table_name="results")
    op.drop_table("alert_state")
    op.drop_index("ix_alert_outbox_pending", table_name="alert_outbox")
    op.drop_table("alert_outbox")
    op.drop_table("heartbeats")
    with op.batch_alter_table("frames") as batch:
        batch.drop_column("pruned_at")
