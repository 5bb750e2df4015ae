"""A server stopped mid-run and started again on the same database finishes the run."""

from __future__ import annotations

import asyncio

from sluice.client import EventType, StepStatus, WorkflowClient, WorkflowStatus
from tests.conftest import ServerFactory
from tests.support.handlers import Calls
from tests.support.templates import step, template


async def test_restarted_server_finishes_the_run(start_server: ServerFactory, calls: Calls) -> None:
    tpl = template(
        "restartable",
        step("first", config={"output": {"n": 1}}),
        step("slow", "latch", "first", config={"latch": "after-restart"}),
        step("last", "sleep", "slow"),
    )
    first = await start_server()
    async with WorkflowClient(first.address) as client:
        run = await client.create_workflow(tpl)
        await client.execute_workflow(run.id)
        await asyncio.wait_for(calls.started[f"{run.id}/slow"].wait(), 5)
    await first.stop()  # "slow" is mid-attempt: nothing records its end

    calls.open("after-restart")
    second = await start_server()
    async with WorkflowClient(second.address) as client:
        events = [e async for e in client.watch(run.id)]
        done = await client.get_workflow(run.id)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    steps = {s.step_id: s for s in done.steps}
    assert all(s.status == StepStatus.STEP_STATUS_COMPLETED for s in steps.values())
    assert len(calls.of(run.id, "first")) == 1, "a completed step never runs again"
    assert [c["attempt"] for c in calls.of(run.id, "slow")] == [1, 2]
    assert steps["slow"].attempt == 2
    keys = {c["key"] for c in calls.of(run.id, "slow")}
    assert keys == {f"{run.id}/slow"}, "the idempotency key is stable across restarts"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    recovered = [
        e
        for e in events
        if e.type == EventType.EVENT_TYPE_STEP_STARTED and "recovered" in e.details
    ]
    assert [(e.step_id, e.attempt) for e in recovered] == [("slow", 2)]


async def test_graceful_stop_lets_running_steps_finish_and_starts_nothing_new(
    start_server: ServerFactory, calls: Calls
) -> None:
    tpl = template(
        "drained",
        step("a", config={"seconds": 0.2}),  # shorter than the fixture's 0.5 s grace
        step("b", "sleep", "a"),
    )
    first = await start_server()
    async with WorkflowClient(first.address) as client:
        run = await client.create_workflow(tpl)
        await client.execute_workflow(run.id)
        await asyncio.wait_for(calls.started[f"{run.id}/a"].wait(), 5)
    store = first.store
    assert store is not None
    await first.stop()

    reopened = await type(store).open(first.settings.database_url)
    try:
        stopped = await reopened.get_run("local", run.id)
    finally:
        await reopened.close()
    assert stopped is not None
    assert stopped.status.value == "RUNNING"
    assert (stopped.steps["a"].status.value, stopped.steps["b"].status.value) == (
        "COMPLETED",
        "PENDING",
    )

    second = await start_server()
    async with WorkflowClient(second.address) as client:
        events = [e async for e in client.watch(run.id)]
    assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED
    assert [c["attempt"] for c in calls.of(run.id, "a")] == [1]
    assert [c["attempt"] for c in calls.of(run.id, "b")] == [1]
