"""wait steps and approval deadlines: step_runs.retry_at becomes wake_at; gate_results.deadline

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 03:00:00

A wait step waits, RUNNING, until a time, as a RETRYING step waits for its next attempt: one
column holds either wait (renamed, values kept). An approval gate with a timeout holds when
the timeout acts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_runs") as batch:
        batch.alter_column("retry_at", new_column_name="wake_at")
    op.add_column("gate_results", sa.Column("deadline", sa.DateTime(timezone=True)))
    # Timer keys name the wait's end, whatever the wait: "retry:<step>" becomes "wake:<step>".
    op.execute("UPDATE timers SET key = 'wake:' || substr(key, 7) WHERE key LIKE 'retry:%'")


def downgrade() -> None:
    op.execute("UPDATE timers SET key = 'retry:' || substr(key, 6) WHERE key LIKE 'wake:%'")
    op.execute("DELETE FROM timers WHERE key LIKE 'deadline:%'")
    op.drop_column("gate_results", "deadline")
    with op.batch_alter_table("step_runs") as batch:
        batch.alter_column("wake_at", new_column_name="retry_at")
