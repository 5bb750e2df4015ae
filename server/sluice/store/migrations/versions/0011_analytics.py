"""analytics: a queue of ended runs and the sums by hour, 6 hours and day GetAnalytics reads

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 05:00:00

A run's terminal commit now also writes a row to analytics_queue with what it adds; servers
fold the queue into analytics_sums (see sluice.engine.analytics). Existing databases: every run
that has ended is queued here without its counts (one INSERT ... SELECT, in the order they
ended), and the server folds them after it starts, in batches, reading each run's stored rows
to count it: the sums are filled from the stored runs without this migration knowing how a run
is counted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The table as this migration sees it (not schema.py's, which later revisions may change).
_runs = sa.table(
    "runs", *(sa.column(c, sa.String) for c in ("id", "owner", "template_id", "status")),
    sa.column("template_version", sa.Integer), sa.column("ended_at", sa.DateTime(timezone=True)),
)  # fmt: skip
_Json = sa.JSON().with_variant(JSONB(), "postgresql")


_SUMS_KEY = (
    "owner", "span_seconds", "span_start", "template_id", "template_version", "kind", "subject",
)  # fmt: skip
# As sluice.engine.analytics.OUTCOMES and BUCKETS (4 per doubling, 2^-12 s to 2^22 s).
_OUTCOMES = (
    "completed", "failed", "cancelled", "skipped", "passed", "approved", "rejected", "undecided",
)  # fmt: skip
_BUCKETS = 137


def upgrade() -> None:
    queue = op.create_table(
        "analytics_queue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", _Json, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "analytics_sums",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("span_seconds", sa.Integer(), nullable=False),
        sa.Column("span_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _OUTCOMES),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("timed", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        *(sa.Column(f"h{i}", sa.Integer(), nullable=False) for i in range(_BUCKETS)),
        sa.PrimaryKeyConstraint(*_SUMS_KEY),
        sqlite_with_rowid=False,
    )
    assert queue is not None
    # Without counts: the fold reads each run's stored rows to count it.
    columns = ("id", "owner", "template_id", "template_version", "ended_at")
    ended = (
        sa.select(*(_runs.c[c] for c in columns))
        .where(_runs.c.status.in_(["COMPLETED", "FAILED", "CANCELLED"]))
        .where(_runs.c.ended_at.is_not(None))
        .order_by(_runs.c.ended_at, _runs.c.id)
    )
    op.get_bind().execute(queue.insert().from_select(["run_id", *columns[1:]], ended))


def downgrade() -> None:
    op.drop_table("analytics_sums")
    op.drop_table("analytics_queue")
