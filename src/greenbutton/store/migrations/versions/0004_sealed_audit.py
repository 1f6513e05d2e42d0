"""Tamper evidence and one open request per transition: the audit log's ``mac`` column (HMAC
with a key outside the store) and an index by action; transition requests get a ``kind``
(``transition`` or ``deployment``) and a ``payload``, and at most one pending request per
(model, version, stage, kind).

Older duplicate pending requests (possible before this revision) are closed as ``failed``,
naming the request that stays open.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    """Add the columns and indexes; close duplicate pending requests first."""
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("mac", sa.String(64), nullable=True))
    op.create_index("ix_audit_log_action_seq", "audit_log", ["action", "seq"])
    with op.batch_alter_table("transition_requests") as table:
        table.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="transition"))
        table.add_column(sa.Column("payload", sa.Text(), nullable=True))
    _close_duplicate_pending()
    op.create_index("uq_transition_requests_open", "transition_requests",
                    ["model_key", "version", "to_stage", "kind"], unique=True,
                    sqlite_where=_PENDING, postgresql_where=_PENDING)


def _close_duplicate_pending() -> None:
    requests = sa.table("transition_requests", sa.column("id", sa.Integer),
                        sa.column("model_key", sa.String), sa.column("version", sa.Integer),
                        sa.column("to_stage", sa.String), sa.column("status", sa.String),
                        sa.column("decided_by", sa.Text), sa.column("decision_reason", sa.Text))
    connection = op.get_bind()
    kept: dict[tuple[str, int, str], int] = {}
    rows = connection.execute(sa.select(requests.c.id, requests.c.model_key, requests.c.version,
                                        requests.c.to_stage)
                              .where(requests.c.status == "pending")
                              .order_by(requests.c.id.desc())).all()
    for row in rows:
        key = (row.model_key, row.version, row.to_stage)
        if key not in kept:
            kept[key] = row.id
            continue
        connection.execute(sa.update(requests).where(requests.c.id == row.id).values(
            status="failed", decided_by="greenbutton",
            decision_reason=f"superseded by request #{kept[key]} (duplicate pending request)"))


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_index("uq_transition_requests_open", "transition_requests")
    with op.batch_alter_table("transition_requests") as table:
        table.drop_column("payload")
        table.drop_column("kind")
    op.drop_index("ix_audit_log_action_seq", "audit_log")
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("mac")
