"""schedules: ScheduleService's schedules and the slots they fired

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 02:45:00

New tables only: `schedules`, and `schedule_fires` whose primary key (owner, schedule, slot)
makes each slot fire once across servers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_PENDING = sa.text("status = 'PENDING'")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("catchup_seconds", sa.Float(), nullable=False),
        sa.Column("options", _JSON, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("pause_reason", sa.Text(), nullable=False),
        sa.Column("next_fire_at", _TIME, nullable=True),
        sa.Column("last_fire_at", _TIME, nullable=True),
        sa.Column("last_run_id", sa.String(length=36), nullable=False),
        sa.Column("last_run_slot", _TIME, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("owner", "id"),
    )
    op.create_index("ix_schedules_next_fire", "schedules", ["next_fire_at"], unique=False)
    op.create_table(
        "schedule_fires",
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("slot", _TIME, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("triggered", sa.Boolean(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("recorded_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner", "schedule_id"],
            ["schedules.owner", "schedules.id"],
            name="fk_schedule_fires_schedule",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner", "schedule_id", "slot"),
    )
    op.create_index(
        "ix_schedule_fires_pending",
        "schedule_fires",
        ["recorded_at"],
        unique=False,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_schedule_fires_pending",
        table_name="schedule_fires",
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    op.drop_table("schedule_fires")
    op.drop_index("ix_schedules_next_fire", table_name="schedules")
    op.drop_table("schedules")
