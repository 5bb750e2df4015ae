"""one stored copy per distinct template body

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00

Runs kept a whole copy of their template (about 2 KB a run, most of a short run's row). Now
each distinct body is stored once in template_snapshots, under the SHA-256 of its canonical
JSON, and runs name it by template_key. Existing runs are moved over in batches, by id; no run
is lost and every run keeps exactly the template it had.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BATCH = 2000

# The tables as this migration sees them (not schema.py's, which later revisions change).
_runs = sa.table(
    "runs", sa.column("id", sa.String), sa.column("template", _Json),
    sa.column("template_key", sa.String),
)  # fmt: skip
_snapshots = sa.table("template_snapshots", sa.column("key", sa.String), sa.column("body", _Json))


def _key(body: Any) -> str:
    # As sluice.store.rows.snapshot_key: SHA-256 of the canonical JSON.
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _insert_snapshots(dialect: str) -> Any:
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    return insert(_snapshots).on_conflict_do_nothing()


def upgrade() -> None:
    op.create_table(
        "template_snapshots",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("body", _Json, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("template_key", sa.String(length=64), nullable=True))

    conn = op.get_bind()
    insert_snapshots = _insert_snapshots(conn.dialect.name)
    set_key = (
        _runs.update()
        .where(_runs.c.id == sa.bindparam("run_id"))
        .values(template_key=sa.bindparam("key"))
    )
    last = ""
    while True:
        batch = conn.execute(
            sa.select(_runs.c.id, _runs.c.template)
            .where(_runs.c.id > last)
            .order_by(_runs.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            break
        bodies: dict[str, Any] = {}
        keys = []
        for run_id, body in batch:
            key = _key(body)
            bodies.setdefault(key, body)
            keys.append({"run_id": run_id, "key": key})
        conn.execute(insert_snapshots, [{"key": k, "body": b} for k, b in bodies.items()])
        conn.execute(set_key, keys)
        last = batch[-1][0]

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.alter_column("template_key", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_foreign_key(
            "fk_runs_template_key", "template_snapshots", ["template_key"], ["key"]
        )
        batch_op.drop_column("template")


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("template", _Json, nullable=True))
    conn = op.get_bind()
    bodies = dict(conn.execute(sa.select(_snapshots.c.key, _snapshots.c.body)).all())
    for key, body in bodies.items():
        conn.execute(_runs.update().where(_runs.c.template_key == key).values(template=body))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.alter_column("template", existing_type=_Json, nullable=False)
        batch_op.drop_constraint("fk_runs_template_key", type_="foreignkey")
        batch_op.drop_column("template_key")
    op.drop_table("template_snapshots")
