"""run leases, durable timers, stored commands

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 13:00:00

Several servers on one database: a run is leased to the server that drives it (owner, epoch,
expiry by the database's clock; every write of the run is fenced by it), calls on a run another
server drives are stored as commands for it, and waits (a step's next attempt) are timer rows
rather than sleeps in a process. Steps keep the time their next attempt is due.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("lease_epoch", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("lease_expires_at", _TIME, nullable=True))
        batch_op.create_index(
            "ix_runs_claimable",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'RUNNING'"),
        )
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_at", _TIME, nullable=True))
    op.create_table(
        "timers",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("fire_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key"),
    )
    op.create_index("ix_timers_fire_at", "timers", ["fire_at"], unique=False)
    op.create_table(
        "run_commands",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("args", json, nullable=False),
        sa.Column("created_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.Column("done_at", _TIME, nullable=True),
        sa.Column("outcome", json, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_commands_run", "run_commands", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_run_commands_run", table_name="run_commands")
    op.drop_table("run_commands")
    op.drop_index("ix_timers_fire_at", table_name="timers")
    op.drop_table("timers")
    with op.batch_alter_table("step_runs", schema=None) as batch_op:
        batch_op.drop_column("retry_at")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_claimable", postgresql_where=sa.text("status = 'RUNNING'"))
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_epoch")
        batch_op.drop_column("lease_owner")
