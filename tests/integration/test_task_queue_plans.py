"""Workers' tasks are read through the tasks' partial indexes, never the whole table: the table
keeps each task step's last attempt until its run is deleted, so it grows with the history,
and activating a task (each task a worker takes) or counting the queues (each scrape) must cost
the queue, not the history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from sluice.store.base import activate_tasks, queue_stats_queries
from sluice.store.factory import create_engine, open_store

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _plan(conn: sa.Connection, statement: sa.ClauseElement, values: dict[str, Any]) -> str:
    compiled = statement.compile(dialect=conn.dialect)
    assert isinstance(compiled, SQLCompiler)
    bound = compiled.construct_params(values)
    processors: dict[str, Any] = dict(compiled._bind_processors)  # as the driver gets them
    args = tuple(
        processors[name](bound[name]) if name in processors else bound[name]
        for name in compiled.positiontup or ()
    )
    if conn.dialect.name == "sqlite":
        found = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled.string}", args)
        return "\n".join(row[-1] for row in found)
    conn.exec_driver_sql("SET enable_seqscan = off")  # only an index (or nothing) may serve it
    return "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled.string}", args))


async def _plans(
    database_url: str, *statements: sa.ClauseElement, values: dict[str, Any] | None = None
) -> list[str]:
    await (await open_store(database_url)).close()  # the schema, migrated
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [await conn.run_sync(_plan, s, values or {}) for s in statements]
    finally:
        await engine.dispose()


def _activation(types: int) -> dict[str, Any]:
    return {
        "k_owner": "alice", "k_limit": 8, "worker": "w1", "activated_at": NOW,
        "expires_at": NOW + timedelta(seconds=30),
        **{f"k_type{i}": f"type-{i}" for i in range(types)},
    }  # fmt: skip


@pytest.mark.parametrize("types", [1, 2], ids=["one task type", "two task types"])
async def test_a_worker_takes_its_tasks_through_the_queued_tasks_index(
    database_url: str, types: int
) -> None:
    (plan,) = await _plans(database_url, activate_tasks(types), values=_activation(types))
    assert "ix_tasks_queued" in plan, plan
    if database_url.startswith("sqlite"):
        assert "SCAN tasks" not in plan, plan  # before: every task row, each time
    else:
        assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize("owner", ["alice", None], ids=["one owner", "every owner"])
async def test_the_queue_figures_read_the_queued_and_the_active_tasks_indexes(
    database_url: str, owner: str | None
) -> None:
    queued, active = await _plans(database_url, *queue_stats_queries(owner))
    assert "ix_tasks_queued" in queued, queued
    assert "ix_tasks_active" in active, active
    for plan in (queued, active):
        assert "SCAN tasks" not in plan.splitlines(), plan  # the table itself, row by row
        assert "Seq Scan" not in plan, plan
