"""A database that is briefly unavailable delays a run; it loses nothing and needs no restart.

The outages are real. On SQLite the test holds the database's write lock from its own
connection past the server's busy timeout (`?timeout=0.1` in the URL), so every write fails
with "database is locked" until the test lets go. On PostgreSQL the test makes the database
refuse connections and closes the server's (ALTER DATABASE ... ALLOW_CONNECTIONS false).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs

from sluice.client import (
    EventType,
    StepStatus,
    UnavailableError,
    Workflow,
    WorkflowClient,
    WorkflowStatus,
)
from tests.conftest import ServerFactory
from tests.support.handlers import Calls
from tests.support.templates import step, template

RETRY_WARNING = "could not store a change"


@asynccontextmanager
async def outage(database_url: str) -> AsyncIterator[None]:
    """The database cannot be written until the block ends."""
    if database_url.startswith("sqlite"):
        connection = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")  # the write lock, held
            yield
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return
    name = make_url(database_url).database
    admin = create_async_engine(
        os.environ["SLUICE_TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            await conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
        yield
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    finally:
        await admin.dispose()


def short_busy_timeout(database_url: str) -> str:
    """SQLite: a write waits 0.1 s for a lock instead of 5 s before it fails."""
    return f"{database_url}?timeout=0.1" if database_url.startswith("sqlite") else database_url


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def completed(client: WorkflowClient, run_id: str) -> Workflow:
    """The run once its log ends (a watch ends after the terminal event)."""
    async for _ in client.watch(run_id):
        pass
    return await client.get_workflow(run_id)


async def test_a_step_result_is_stored_once_the_database_is_back(
    start_server: ServerFactory, database_url: str, calls: Calls
) -> None:
    server = await start_server(database_url=short_busy_timeout(database_url))
    with capture_logs() as logged:
        async with WorkflowClient(server.address) as client:
            tpl = template("t", step("a", "latch", config={"latch": "a", "output": {"n": 1}}),
                           step("b", "sleep", "a"))  # fmt: skip
            run = await client.create_workflow(tpl)
            await client.execute_workflow(run.id)
            await asyncio.wait_for(calls.started[f"{run.id}/a"].wait(), 5)

            async with outage(database_url):
                calls.open("a")  # a finishes while nothing can be written
                await until(lambda: sum(RETRY_WARNING in e["event"] for e in logged) >= 2)
            finished = await asyncio.wait_for(completed(client, run.id), 15)

    assert finished.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert [s.status for s in finished.steps] == [StepStatus.STEP_STATUS_COMPLETED] * 2
    assert len(calls.of(run.id, "a")) == 1, "the result was kept, not recomputed"
    assert finished.steps[0].attempt == 1
    assert dict(finished.steps[0].output) == {"n": 1}


async def test_a_call_during_an_outage_gets_unavailable_and_changes_nothing(
    start_server: ServerFactory, database_url: str
) -> None:
    server = await start_server(database_url=short_busy_timeout(database_url))
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(template("t", step("a")))
        async with outage(database_url):
            with pytest.raises(UnavailableError, match="database is unavailable"):
                await client.cancel_workflow(run.id)
            with pytest.raises(UnavailableError):
                await client.create_workflow(template("t", step("a")))
        # The same call succeeds once the database is back, and the log has no gap.
        cancelled = await client.cancel_workflow(run.id)
        events = [e async for e in client.watch(run.id)]
        listed = [w async for w in client.iter_workflows()]
    assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_CANCELLED
    assert [w.id for w in listed] == [run.id], "the refused create wrote nothing"
