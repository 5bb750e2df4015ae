"""WatchWorkflow: stored then live events, no gap, no duplicate; reconnects; many watchers."""

from __future__ import annotations

import asyncio

from sluice.client import EventType, WorkflowClient, WorkflowEvent, WorkflowStatus
from tests.support.handlers import Calls
from tests.support.templates import step, template


def chain(latch: str) -> dict[str, object]:
    return template(
        "chain",
        step("a", "latch", config={"latch": latch}),
        step("b", "sleep", "a", config={"seconds": 0.01}),
        step("c", "sleep", "a", config={"seconds": 0.01}),
        step("d", "sleep", "b", "c"),
    )


async def collect(client: WorkflowClient, run_id: str, after: int = 0) -> list[WorkflowEvent]:
    return [e async for e in client.watch(run_id, after_sequence=after)]


async def test_watch_streams_live_events_and_ends_at_the_terminal_one(
    client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(chain("go"))
    watcher = asyncio.create_task(collect(client, run.id))
    await client.execute_workflow(run.id)
    await asyncio.wait_for(calls.started[f"{run.id}/a"].wait(), 5)
    calls.open("go")
    events = await asyncio.wait_for(watcher, 10)

    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == EventType.EVENT_TYPE_WORKFLOW_CREATED
    assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED
    assert events[-1].workflow_status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    started = [e.step_id for e in events if e.type == EventType.EVENT_TYPE_STEP_STARTED]
    assert sorted(started) == ["a", "b", "c", "d"]
    final = await client.get_workflow(run.id)
    assert final.last_sequence == events[-1].sequence


async def test_reconnecting_after_event_k_yields_exactly_the_rest(
    client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(chain("resume-watch"))
    await client.execute_workflow(run.id)
    await asyncio.wait_for(calls.started[f"{run.id}/a"].wait(), 5)

    first: list[WorkflowEvent] = []
    async for event in client.watch(run.id):  # disconnect mid-run, after the 3rd event
        first.append(event)
        if len(first) == 3:
            break
    calls.open("resume-watch")
    rest = await asyncio.wait_for(collect(client, run.id, after=first[-1].sequence), 10)

    everything = await collect(client, run.id)
    assert [e.sequence for e in rest] == list(range(4, len(everything) + 1))
    assert [e.SerializeToString() for e in first + rest] == [
        e.SerializeToString() for e in everything
    ]


async def test_watching_a_finished_run_replays_and_ends(client: WorkflowClient) -> None:
    run = await client.create_workflow(template("quick", step("a")))
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    events = await asyncio.wait_for(collect(client, run.id), 5)
    assert events[-1].sequence == done.last_sequence
    assert await asyncio.wait_for(collect(client, run.id, after=done.last_sequence), 5) == []


async def test_many_watchers_on_one_run_and_on_many_runs(
    client: WorkflowClient, calls: Calls
) -> None:
    runs = [await client.create_workflow(chain(f"fan-{i}")) for i in range(5)]
    watchers = {
        run.id: [asyncio.create_task(collect(client, run.id)) for _ in range(10)] for run in runs
    }
    for i, run in enumerate(runs):
        await client.execute_workflow(run.id)
        calls.open(f"fan-{i}")
    for run in runs:
        results = await asyncio.wait_for(asyncio.gather(*watchers[run.id]), 15)
        final = await client.get_workflow(run.id)
        expected = list(range(1, final.last_sequence + 1))
        for events in results:
            assert [e.sequence for e in events] == expected
            assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED
