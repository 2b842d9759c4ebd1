"""A score's scale is its model version *and* its method: both key models, results and thresholds.

Before, a model was registered once per version with whichever method scored first, results
were unique on (frame, version) and thresholds on (source, version): a method switch on the
same checkpoint reused thresholds calibrated on another scale. Now models are unique on
(version, method), and results and thresholds (and the audit trail) carry the method, with a
foreign key to their model's (version, method).

Existing rows take their model's method (the only one a version could have). A "vaegan"
checkpoint with ``standardise`` set (its config is stored with the model) scored a
computation that is the family "vaegan-z" now: its methods are renamed to "vaegan-z" and
"vaegan-attn-z", the names its checkpoint loads with, so its results and thresholds stay
attached. A downgrade is refused while a version is registered with several methods.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"  # written 2026-11-30; no branch labels, no dependencies
down_revision = "0004"

STANDARDISED = {"vaegan": "vaegan-z", "vaegan-attn": "vaegan-attn-z"}
KEYED = ("results", "thresholds")  # with a foreign key to their model
OLD_UNIQUE = {
    "results": ("uq_results_frame_model", ["frame_id", "model_version"]),
    "thresholds": ("uq_thresholds_source_model", ["source", "model_version"]),
}
NEW_UNIQUE = {
    "results": ("uq_results_frame_model_method", ["frame_id", "model_version", "method"]),
    "thresholds": ("uq_thresholds_source_model_method", ["source", "model_version", "method"]),
}
models = sa.table(
    "models", sa.column("id", sa.Integer), sa.column("method", sa.String), sa.column("config", sa.JSON)
)


def _standardised(config: object) -> bool:
    model = config.get("model") if isinstance(config, dict) else None
    return isinstance(model, dict) and model.get("family") == "vaegan" and bool(model.get("standardise"))


def _rename_methods(names: dict[str, str]) -> None:
    bind = op.get_bind()
    for row in bind.execute(sa.select(models.c.id, models.c.method, models.c.config)):
        if row.method in names and _standardised(row.config):
            bind.execute(models.update().where(models.c.id == row.id).values(method=names[row.method]))


def upgrade() -> None:
    _rename_methods(STANDARDISED)
    for (
        table
    ) in KEYED:  # the old keys go first: PostgreSQL keeps models' unique version while they point at it
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"fk_{table}_model_version_models"), type_="foreignkey")
            batch.drop_constraint(op.f(OLD_UNIQUE[table][0]), type_="unique")
            batch.add_column(sa.Column("method", sa.String(length=32), nullable=True))
    op.add_column("threshold_changes", sa.Column("method", sa.String(length=32), nullable=True))
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint(op.f("uq_models_version"), type_="unique")
        batch.create_unique_constraint(op.f("uq_models_version_method"), ["version", "method"])
    for table in (*KEYED, "threshold_changes"):
        op.execute(
            f"UPDATE {table} SET method = COALESCE("
            f"(SELECT models.method FROM models WHERE models.version = {table}.model_version), '')"
        )
    for table in KEYED:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("method", existing_type=sa.String(length=32), nullable=False)
            batch.create_unique_constraint(op.f(NEW_UNIQUE[table][0]), NEW_UNIQUE[table][1])
            batch.create_foreign_key(
                op.f(f"fk_{table}_model_method"), "models", ["model_version", "method"], ["version", "method"]
            )
    with op.batch_alter_table("threshold_changes") as batch:
        batch.alter_column("method", existing_type=sa.String(length=32), nullable=False)


def downgrade() -> None:
    several = (
        op.get_bind()
        .execute(sa.text("SELECT version FROM models GROUP BY version HAVING COUNT(*) > 1"))
        .scalar()
    )
    if several is not None:
        raise RuntimeError(
            f"model {several} is registered with several methods: their results cannot share "
            "one (frame, version) key below revision 0005; delete all but one method's first"
        )
    for table in KEYED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"fk_{table}_model_method"), type_="foreignkey")
            batch.drop_constraint(op.f(NEW_UNIQUE[table][0]), type_="unique")
            batch.drop_column("method")
            batch.create_unique_constraint(op.f(OLD_UNIQUE[table][0]), OLD_UNIQUE[table][1])
    with op.batch_alter_table("threshold_changes") as batch:
        batch.drop_column("method")
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint(op.f("uq_models_version_method"), type_="unique")
        batch.create_unique_constraint(op.f("uq_models_version"), ["version"])
    for table in KEYED:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                op.f(f"fk_{table}_model_version_models"), "models", ["model_version"], ["version"]
            )
    _rename_methods({new: old for old, new in STANDARDISED.items()})
