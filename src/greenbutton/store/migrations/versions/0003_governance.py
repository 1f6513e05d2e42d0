"""Governance: principals, tokens (hashed), per-model grants and policies, transition
requests, gate results, and the append-only hash-chained audit log.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the governance tables."""
    op.create_table(
        "principals",
        sa.Column("name_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("principal_key", sa.String(64), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("expires_at", _AT, nullable=True),
        sa.Column("revoked_at", _AT, nullable=True),
    )
    op.create_index("ix_tokens_principal_key", "tokens", ["principal_key"])
    op.create_table(
        "grants",
        sa.Column("principal_key", sa.String(64), primary_key=True),
        sa.Column("model_key", sa.String(64), primary_key=True),
        sa.Column("permission", sa.String(16), primary_key=True),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("granted_at", _AT, nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
    )
    op.create_table(
        "model_policies",
        sa.Column("model_key", sa.String(64), primary_key=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("four_eyes", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
    )
    op.create_table(
        "transition_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("model_key", sa.String(64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("proposer", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_at", _AT, nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("is_override", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_transition_requests_model_key_status", "transition_requests",
                    ["model_key", "status"])
    op.create_table(
        "gate_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("model_key", sa.String(64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("gate", sa.String(64), nullable=False),
        sa.Column("is_passed", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", _AT, nullable=False),
    )
    op.create_index("ix_gate_results_model_key_version", "gate_results",
                    ["model_key", "version"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    """Drop the governance tables."""
    for table in ("audit_log", "gate_results", "transition_requests", "model_policies",
                  "grants", "tokens", "principals"):
        op.drop_table(table)
