"""leases held by a server's heartbeat, not renewed run by run

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 16:00:00

A server renewed every run it held, one row each, every few seconds: under load the renewal
and a batch of transitions locked the same rows in different orders and PostgreSQL broke the
deadlock after a second, stalling every write of that batch. Now each server has one row in
`servers` with an expiry, renewed alone, and a run's lease (owner, epoch) lives as long as
its owner's row. Leases from before are let go: every server is stopped while this runs (as
for any migration), and a run with no owner is claimed by the first server that starts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_UNFINISHED = sa.text("status IN ('PENDING', 'RUNNING', 'PAUSED')")


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("started_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # (Ended runs keep the name of their last server: nothing claims them.)
    op.execute(
        "UPDATE runs SET lease_owner = NULL"
        " WHERE lease_owner IS NOT NULL AND status IN ('PENDING', 'RUNNING', 'PAUSED')"
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_claimable", postgresql_where=sa.text("status = 'RUNNING'"))
        batch_op.drop_column("lease_expires_at")
        batch_op.create_index(
            "ix_runs_lease_owner", ["lease_owner"], unique=False, postgresql_where=_UNFINISHED
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_lease_owner", postgresql_where=_UNFINISHED)
        batch_op.add_column(sa.Column("lease_expires_at", _TIME, nullable=True))
        batch_op.create_index(
            "ix_runs_claimable",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'RUNNING'"),
        )
    op.execute("UPDATE runs SET lease_owner = NULL WHERE lease_owner IS NOT NULL")
    op.drop_table("servers")
