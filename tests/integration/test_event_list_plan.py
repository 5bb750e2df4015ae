"""ListWorkflowEvents reads a page through the events' primary key (run_id, sequence): the
database seeks to the run's events past the cursor and reads them in order, never the table or
a sort, whatever the filters."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import sqlalchemy as sa

from sluice.engine.model import EventType
from sluice.store.base import event_page_query
from sluice.store.factory import create_engine, open_store

RUN = "00000000-0000-4000-8000-000000000001"
FILTERS = list(
    itertools.product(
        [(), (EventType.STEP_COMPLETED,), (EventType.STEP_FAILED, EventType.GATE_FAILED)],
        [(), ("draft",), ("draft", "publish")],
    )
)


def _plan(conn: sa.Connection, query: sa.Select[Any]) -> list[str]:
    # Values written into the statement (ids and type names): the IN lists' expanding
    # parameters have no form EXPLAIN takes.
    sql = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    if conn.dialect.name == "sqlite":
        return [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    conn.exec_driver_sql("SET enable_seqscan = off")  # only an index (or nothing) may serve it
    return [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}")]


@pytest.mark.parametrize("after", [0, 40], ids=["first page", "next page"])
@pytest.mark.parametrize(("types", "step_ids"), FILTERS, ids=repr)
async def test_each_filter_reads_the_runs_events_by_primary_key_in_order(
    database_url: str, types: tuple[EventType, ...], step_ids: tuple[str, ...], after: int
) -> None:
    await (await open_store(database_url)).close()  # the schema, migrated
    engine = create_engine(database_url)
    query = event_page_query(RUN, after, 101, types, step_ids)
    try:
        async with engine.connect() as conn:
            plan = await conn.run_sync(lambda sync: _plan(sync, query))
    finally:
        await engine.dispose()
    text = "\n".join(plan)
    if engine.dialect.name == "sqlite":
        assert len(plan) == 1 and plan[0].startswith("SEARCH events USING"), text
        assert "(run_id=? AND sequence>?)" in plan[0], text
        assert "TEMP B-TREE" not in text, text
    else:
        assert "Index Scan using events_pkey" in text and "Sort" not in text, text
        bound = "".join(line for line in plan if "Index Cond" in line)
        assert "run_id" in bound and "sequence" in bound, text
