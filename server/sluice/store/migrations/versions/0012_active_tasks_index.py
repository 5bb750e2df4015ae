"""ix_tasks_active: the tasks held by workers, read by the queue's gauges

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 11:00:00

The tasks table keeps each task step's last attempt until its run is deleted, so it grows with
the history; the queue's figures (`sluice_task_queue_in_progress`, queue depth) now read the
queued and the active tasks through a partial index each instead of the whole table. An index
only: no row changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_ACTIVE = sa.text("state = 'active'")


def upgrade() -> None:
    op.create_index(
        "ix_tasks_active",
        "tasks",
        ["owner", "task_type"],
        unique=False,
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_tasks_active", table_name="tasks", postgresql_where=_ACTIVE, sqlite_where=_ACTIVE
    )
