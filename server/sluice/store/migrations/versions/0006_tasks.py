"""tasks: the worker side of steps of type "task" (WorkerService)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 19:00:00

One row per "task" step's current attempt: queued with the attempt's STEP_STARTED, leased to
a worker, then finished. A new table only: existing runs have no task step.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("delivery", sa.Integer(), nullable=False),
        sa.Column("queued_at", _TIME, nullable=False),
        sa.Column("start_by", _TIME, nullable=False),
        sa.Column("run_timeout", sa.Float(), nullable=False),
        sa.Column("input", _JSON, nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("activated_at", _TIME, nullable=True),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("acked", sa.Boolean(), nullable=False),
        sa.Column("result", _JSON, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "step_id"),
    )
    op.create_index(
        "ix_tasks_queued",
        "tasks",
        ["owner", "task_type", "queued_at"],
        unique=False,
        postgresql_where=_QUEUED,
        sqlite_where=_QUEUED,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_tasks_queued", table_name="tasks", postgresql_where=_QUEUED, sqlite_where=_QUEUED
    )
    op.drop_table("tasks")
