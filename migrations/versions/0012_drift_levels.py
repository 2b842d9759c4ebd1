"""Frame levels for the drift monitor: each result keeps its frame's mean level before
flat-fielding (results.level), and the monitor's state and events name what they watched
(drift_state per source and quantity: "score" or "level"). Rows from before are the scores'.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _watched() -> sa.Column:
    """Filled with "score" for the rows there are; no default afterwards (the code always names it)."""
    return sa.Column("watched", sa.String(length=16), nullable=False, server_default="score")


def upgrade() -> None:
    op.add_column("results", sa.Column("level", sa.Double(), nullable=True))
    with op.batch_alter_table("drift_state", recreate="always") as batch:
        batch.add_column(_watched())
        batch.drop_constraint(op.f("pk_drift_state"), type_="primary")
        batch.create_primary_key(op.f("pk_drift_state"), ["source", "watched"])
    with op.batch_alter_table("drift_state") as batch:
        batch.alter_column("watched", existing_type=sa.String(length=16), server_default=None)
    with op.batch_alter_table("drift_events") as batch:
        batch.add_column(_watched())
    with op.batch_alter_table("drift_events") as batch:
        batch.alter_column("watched", existing_type=sa.String(length=16), server_default=None)


def downgrade() -> None:
    op.execute(
        "DELETE FROM alert_outbox WHERE drift_event_id IN "
        "(SELECT id FROM drift_events WHERE watched <> 'score')"
    )
    op.execute("DELETE FROM drift_events WHERE watched <> 'score'")
    op.execute("DELETE FROM drift_state WHERE watched <> 'score'")
    with op.batch_alter_table("drift_events") as batch:
        batch.drop_column("watched")
    with op.batch_alter_table("drift_state", recreate="always") as batch:
        batch.drop_constraint(op.f("pk_drift_state"), type_="primary")
        batch.create_primary_key(op.f("pk_drift_state"), ["source"])
        batch.drop_column("watched")
    op.drop_column("results", "level")
