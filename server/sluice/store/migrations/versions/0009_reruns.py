"""reruns: a run records the run it reruns and the step it reruns from

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 03:00:00

RerunWorkflow makes a new run linked to a FAILED or CANCELLED one. Two nullable columns, so
existing runs (none a rerun) need no data moved.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerun_of", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("rerun_from_step", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("rerun_from_step")
        batch_op.drop_column("rerun_of")
