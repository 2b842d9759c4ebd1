"""The model registry: each source's live model, its candidate and retired ones (model_roles), the
audit trail of role changes (model_changes), and results.shadow: a candidate's verdicts, scored
beside the live model's, that never alert and never enter the review queue.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("shadow", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "model_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("role IN ('live', 'candidate', 'retired')", name=op.f("ck_model_roles_role")),
        sa.ForeignKeyConstraint(
            ["model_version", "method"],
            ["models.version", "models.method"],
            name="fk_model_roles_model_method",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_roles")),
        sa.UniqueConstraint("source", "model_version", "method", name="uq_model_roles_source_model_method"),
    )
    for role in ("live", "candidate"):
        where = sa.text(f"role = '{role}'")
        op.create_index(
            f"uq_model_roles_{role}",
            "model_roles",
            ["source"],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )
    op.create_table(
        "model_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("previous_version", sa.String(length=64), nullable=True),
        sa.Column("previous_method", sa.String(length=32), nullable=True),
        sa.Column("changed_by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_changes")),
    )


def downgrade() -> None:
    op.drop_table("model_changes")
    for role in ("live", "candidate"):
        op.drop_index(f"uq_model_roles_{role}", table_name="model_roles")
    op.drop_table("model_roles")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("shadow")
