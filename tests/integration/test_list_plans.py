"""Every ListWorkflows filter is served by an index: the database reads a page's own rows,
newest first straight from the index, never the owner's whole history or a sort of it."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from sluice.engine.model import RunStatus
from sluice.engine.ports import RunFilter
from sluice.store.base import page_query
from sluice.store.factory import create_engine, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 1, tzinfo=UTC)

FILTERS = [
    RunFilter(statuses, template, start, end)
    for statuses, template, (start, end) in itertools.product(
        [(), (RunStatus.FAILED,)], ["", "content-to-social"], [(None, None), (T0, None), (T0, T1)]
    )
]
CURSORS = [None, (T1, "00000000-0000-4000-8000-000000000000")]


def _plan(conn: sa.Connection, query: sa.Select[Any]) -> list[str]:
    compiled = query.compile(dialect=conn.dialect)
    params = [compiled.params[name] for name in compiled.positiontup or ()]
    if conn.dialect.name == "sqlite":
        params = [p.isoformat(" ") if isinstance(p, datetime) else p for p in params]
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(params))
        return [row[-1] for row in rows]
    conn.exec_driver_sql("SET enable_seqscan = off")  # only an index (or nothing) may serve it
    return [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", tuple(params))]


@pytest.mark.parametrize("cursor", CURSORS, ids=["first page", "next page"])
@pytest.mark.parametrize("where", FILTERS, ids=repr)
async def test_each_filter_is_an_index_range_in_list_order(
    database_url: str, where: RunFilter, cursor: tuple[datetime, str] | None
) -> None:
    await (await open_store(database_url)).close()  # the schema, migrated
    engine = create_engine(database_url)
    status = where.statuses[0] if where.statuses else None
    query = page_query("alice", where, status, cursor, 51)
    try:
        async with engine.connect() as conn:
            plan = await conn.run_sync(lambda sync: _plan(sync, query))
    finally:
        await engine.dispose()
    text = "\n".join(plan)
    # Each filter must bound the index range, not be checked row by row after it.
    bounded = ["owner"] + ["status"] * bool(status) + ["template_id"] * bool(where.template_id)
    if engine.dialect.name == "sqlite":
        assert all(line.startswith("SEARCH runs USING") for line in plan), text
        assert "TEMP B-TREE" not in text, text
        bounded += ["created_at>"] * bool(where.created_from)
        bounded += ["(created_at,id)<"] if cursor else ["created_at<"] * bool(where.created_before)
        constraint = text.partition("(")[2]
    else:
        assert "Index" in text and "Seq Scan" not in text and "Sort" not in text, text
        bounded += ["created_at"] * bool(where.created_from or where.created_before or cursor)
        constraint = "".join(line for line in plan if "Index Cond" in line)
    assert all(column in constraint for column in bounded), (bounded, text)
