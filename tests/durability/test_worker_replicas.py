"""Workers on one server of several (PostgreSQL): tasks of runs the other servers drive reach
them through the store, a notice wakes their waiting polls and streams, and their results
reach the servers driving the runs, which complete them.

PostgreSQL only (SQLite serves one server): run by `make test-postgres`."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from sluice.client import WorkflowClient, WorkflowStatus
from sluice.v1 import worker_service_pb2 as wpb
from tests.conftest import ServerFactory
from tests.support.workers import RawWorker, TaskStream, finished, task_template

pytestmark = pytest.mark.skipif(
    not os.environ.get("SLUICE_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="several servers need PostgreSQL (make test-postgres)",
)


async def _lease_owners(database_url: str, run_ids: list[str]) -> dict[str, str]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                sa.text("SELECT id, lease_owner FROM runs WHERE id = ANY(:ids)"), {"ids": run_ids}
            )
            return {run_id: owner for run_id, owner in found}
    finally:
        await engine.dispose()


def _text(task: wpb.Task) -> str:
    return str(dict(task.config)["text"])


async def test_workers_on_one_server_finish_the_runs_the_others_drive(
    start_server: ServerFactory, database_url: str
) -> None:
    a, b, c = [await start_server() for _ in range(3)]
    template = task_template()
    runs: list[str] = []
    for server in (b, c):
        async with WorkflowClient(server.address) as client:
            for i in range(5):
                run = await client.create_workflow(template, {"text": f"{server.port}-{i}"})
                await client.execute_workflow(run.id)
                runs.append(run.id)
    owners = await _lease_owners(database_url, runs)
    assert b.engine is not None and c.engine is not None
    assert set(owners.values()) == {b.engine.server_id, c.engine.server_id}

    async with RawWorker(a.address) as worker:
        # A stream on A, woken by the others' notices; then polls for the rest.
        stream = TaskStream(worker, "echo", credits=3)
        streamed = [await stream.next_task() for _ in range(3)]
        for task in streamed:
            await worker.complete(task.task_token, {"shout": _text(task).upper()})
        stream.half_close()
        await stream.end()
        polled = await worker.poll(max_tasks=10, wait=10)
        while len(streamed) + len(polled) < len(runs):
            polled += await worker.poll(max_tasks=10, wait=10)
        for task in polled:
            await worker.complete(task.task_token, {"shout": _text(task).upper()})

    async with WorkflowClient(a.address) as client:
        ended = [await finished(client, r) for r in runs]
    assert {f.status for f in ended} == {WorkflowStatus.WORKFLOW_STATUS_COMPLETED}
    for f in ended:
        steps = {s.step_id: s for s in f.steps}
        assert steps["after"].output["result"] == str(f.params["text"]).upper()


async def test_a_run_driven_elsewhere_is_cancelled_for_its_worker(
    start_server: ServerFactory,
) -> None:
    a, b = [await start_server() for _ in range(2)]
    async with WorkflowClient(b.address) as on_b, RawWorker(a.address) as worker:
        run = await on_b.create_workflow(task_template())
        await on_b.execute_workflow(run.id)
        task = await worker.poll_one()
        assert await worker.heartbeat(task.task_token) is False
        async with WorkflowClient(a.address) as on_a:
            cancelled = await on_a.cancel_workflow(run.id)
        assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
        assert await worker.heartbeat(task.task_token) is True
