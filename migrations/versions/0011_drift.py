"""Drift: each source's latest check of its live model's recent scores (drift_state), the drifts
found (drift_events), and their alerts in the outbox beside flagged results' (alert_outbox rows
name a result or a drift event, exactly one).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "drift_state",
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("statistic", sa.Double(), nullable=True),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("drifting", sa.Boolean(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_drift_state")),
    )
    op.create_table(
        "drift_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("statistic", sa.Double(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_events")),
    )
    with op.batch_alter_table("alert_outbox") as batch:
        batch.alter_column("result_id", existing_type=BIG_ID, nullable=True)
        batch.add_column(sa.Column("drift_event_id", BIG_ID, nullable=True))
        batch.create_foreign_key(
            op.f("fk_alert_outbox_drift_event_id_drift_events"),
            "drift_events",
            ["drift_event_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_unique_constraint("uq_alert_outbox_drift_event_channel", ["drift_event_id", "channel"])
        batch.create_check_constraint("one_subject", "(result_id IS NULL) <> (drift_event_id IS NULL)")


def downgrade() -> None:
    op.execute("DELETE FROM alert_outbox WHERE drift_event_id IS NOT NULL")
    with op.batch_alter_table("alert_outbox") as batch:
        batch.drop_constraint(op.f("ck_alert_outbox_one_subject"), type_="check")
        batch.drop_constraint("uq_alert_outbox_drift_event_channel", type_="unique")
        batch.drop_constraint(op.f("fk_alert_outbox_drift_event_id_drift_events"), type_="foreignkey")
        batch.drop_column("drift_event_id")
        batch.alter_column("result_id", existing_type=BIG_ID, nullable=False)
    op.drop_table("drift_events")
    op.drop_table("drift_state")
