"""A proposal is on record while its gates run: transition requests get a ``lease_until``
(held by the control plane running the gates), and ``gating`` requests count as open, like
``pending`` ones, for the one-open-request-per-move index.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_OPEN = sa.text("status IN ('gating', 'pending')")
_PENDING = sa.text("status = 'pending'")
_KEY = ["model_key", "version", "to_stage", "kind"]


def upgrade() -> None:
    """Add the lease column; widen the open-request index to ``gating``."""
    with op.batch_alter_table("transition_requests") as table:
        table.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_index("uq_transition_requests_open", "transition_requests")
    op.create_index("uq_transition_requests_open", "transition_requests", _KEY, unique=True,
                    sqlite_where=_OPEN, postgresql_where=_OPEN)


def downgrade() -> None:
    """Fail requests still gating (the older release cannot finish them), then drop what
    upgrade added."""
    requests = sa.table("transition_requests", sa.column("status", sa.String),
                        sa.column("decided_by", sa.Text), sa.column("decision_reason", sa.Text))
    op.get_bind().execute(sa.update(requests).where(requests.c.status == "gating").values(
        status="failed", decided_by="greenbutton",
        decision_reason="downgraded while its gates were running; propose again"))
    op.drop_index("uq_transition_requests_open", "transition_requests")
    op.create_index("uq_transition_requests_open", "transition_requests", _KEY, unique=True,
                    sqlite_where=_PENDING, postgresql_where=_PENDING)
    with op.batch_alter_table("transition_requests") as table:
        table.drop_column("lease_until")
