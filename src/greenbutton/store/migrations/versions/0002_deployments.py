"""Deployment specs written by users (routes with weights, shadow, replicas, target).

The spec itself is a JSON document validated by ``DeploymentSpec`` on the way in and out, so
new optional fields need no migration; ``revision`` gives optimistic concurrency.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``deployment_specs``."""
    op.create_table(
        "deployment_specs",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop ``deployment_specs``."""
    op.drop_table("deployment_specs")
