"""Lifecycle stage of each model version and the append-only transition history.

Rows are keyed by ``model_key`` (hex SHA-256 of the name) so names of any length fit an index.
A partial unique index keeps at most one version of a model in Production and in Staging,
so two concurrent promotions cannot both win.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``version_stages`` and ``transitions``."""
    op.create_table(
        "version_stages",
        sa.Column("model_key", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model_key", "version", name="pk_version_stages"),
        if_not_exists=True,
    )
    exclusive = sa.text("stage IN ('Production', 'Staging')")
    op.create_index(
        "uq_version_stages_exclusive_stage",
        "version_stages",
        ["model_key", "stage"],
        unique=True,
        sqlite_where=exclusive,
        postgresql_where=exclusive,
        if_not_exists=True,
    )
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_key", sa.String(64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=False),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_index(
        "ix_transitions_model_key_version",
        "transitions",
        ["model_key", "version"],
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index("ix_transitions_model_key_version", table_name="transitions")
    op.drop_table("transitions")
    op.drop_index("uq_version_stages_exclusive_stage", table_name="version_stages")
    op.drop_table("version_stages")
