"""Migration 0005 moves leases onto servers' heartbeats: a database at 0004 comes out with a
`servers` table, its unfinished runs let go (claimable by the first server that starts) and
its ended runs as they were. Runs on SQLite and, with `make test-postgres`, PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from sluice.store import migrate
from sluice.store.factory import create_engine

# Schema and migration tests start from an empty file, not from the migrated copy.
pytestmark = pytest.mark.empty_database

T0 = datetime(2026, 2, 1, 8, tzinfo=UTC)

# `runs` as it was at 0004 (only the columns these rows need are named).
RUNS = sa.table("runs", *(sa.column(c) for c in (
    "id", "owner", "template_id", "template_version", "template_key", "status", "error",
    "pause_reason", "paused_gate_id", "created_at", "last_sequence", "version", "params",
    "options", "lease_owner", "lease_epoch", "lease_expires_at",
)))  # fmt: skip


def _run(n: int, status: str) -> dict[str, object]:
    return {
        "id": f"run-{n}", "owner": "alice", "template_id": "t", "template_version": 1,
        "template_key": "k", "status": status, "error": "", "pause_reason": "",
        "paused_gate_id": "", "created_at": T0, "last_sequence": 1, "version": 1,
        "params": "{}", "options": "{}", "lease_owner": "old-server", "lease_epoch": 3,
        "lease_expires_at": T0,
    }  # fmt: skip


async def test_unfinished_runs_are_let_go_and_ended_ones_kept(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine, "0004")
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO template_snapshots (key, body) VALUES ('k', '{}')")
            )
            await conn.execute(
                RUNS.insert(),
                [_run(1, "RUNNING"), _run(2, "PAUSED"), _run(3, "COMPLETED")],
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT id, lease_owner, lease_epoch FROM runs"))
            leases = {r[0]: (r[1], r[2]) for r in rows}
            servers = (await conn.execute(sa.text("SELECT count(*) FROM servers"))).scalar()
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("runs")}
            )
    finally:
        await engine.dispose()

    assert leases == {
        "run-1": (None, 3),  # the epoch stays: the next claim moves it on
        "run-2": (None, 3),
        "run-3": ("old-server", 3),
    }
    assert servers == 0
    assert "lease_expires_at" not in columns
