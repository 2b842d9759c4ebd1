"""The review queue pages flagged results by (score, id): an index in that order.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_results_anomaly_score", "results", ["is_anomaly", "score", "id"])


def downgrade() -> None:
    op.drop_index("ix_results_anomaly_score", table_name="results")
