"""list indexes, template deletion, request fingerprints

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 12:00:00

ListWorkflows gets an index for each filter (status, template, both), each ending in the
list's order (created_at, id) so a page is one index range; PENDING expiry and retention get
theirs. Templates get a deletion mark (version numbers are never reused). Runs get the
fingerprints of the requests whose request_id they keep.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("start_request_hash", sa.String(length=64), nullable=True))
        batch_op.drop_index("ix_runs_owner_status_created")
        batch_op.drop_index("ix_runs_status")
        batch_op.create_index(
            "ix_runs_owner_status_created", ["owner", "status", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_runs_owner_template_created",
            ["owner", "template_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_runs_owner_template_status_created",
            ["owner", "template_id", "status", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index("ix_runs_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index("ix_runs_ended", ["ended_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_ended")
        batch_op.drop_index("ix_runs_status_created")
        batch_op.drop_index("ix_runs_owner_template_status_created")
        batch_op.drop_index("ix_runs_owner_template_created")
        batch_op.drop_index("ix_runs_owner_status_created")
        batch_op.create_index("ix_runs_status", ["status"], unique=False)
        batch_op.create_index(
            "ix_runs_owner_status_created", ["owner", "status", "created_at"], unique=False
        )
        batch_op.drop_column("start_request_hash")
        batch_op.drop_column("request_hash")

    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
