"""trace context: a run keeps the trace its spans belong to

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 05:00:00

With tracing on (OTEL_* variables), a run's spans are made by whichever server drives it, after
crashes and takeovers too, so the run's trace id and its own span's id are stored with it as
it is created. One nullable JSON column: runs created before (or with tracing off) have none
and are not traced, so no data is moved.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("trace_context", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("trace_context")
