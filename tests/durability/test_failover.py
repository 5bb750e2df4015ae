"""A watch whose server is killed goes on, from the last event it saw, at another address the
client was given: the caller gets every event of the run once, in order.

Until servers share one database live, the "other server" is B started after A's death on
A's database, at an address the client had from the start (and found down until then).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sluice.client import (
    EventType,
    SyncWorkflowClient,
    WorkflowClient,
    WorkflowEvent,
    WorkflowStatus,
)
from tests.support.plugin import read_ledger
from tests.support.process import ServerProcess, free_port
from tests.support.templates import step, template

SLOW_CHAIN = template(
    "slow-chain",
    step("a", "work", config={"seconds": 0.2}),
    *(
        step(name, "work", before, config={"seconds": 0.3})
        for before, name in zip("abcde", "bcdef", strict=True)
    ),
)


def watch_in_thread(
    addresses: list[str], run_id: str, midway: Callable[[], None], breaks: list[str]
) -> list[WorkflowEvent]:
    """The blocking client's watch, as a script would run it."""
    events = []
    with SyncWorkflowClient(addresses) as client:
        for event in client.watch(
            run_id, reconnect=True, on_reconnect=lambda error, _: breaks.append(error.code.name)
        ):
            events.append(event)
            if event.type == EventType.EVENT_TYPE_STEP_COMPLETED and event.step_id == "b":
                midway()
    return events


@pytest.mark.parametrize("flavour", ["async", "blocking"])
async def test_a_watch_goes_on_at_another_address_when_its_server_is_killed(
    database_url: str, tmp_path: Path, flavour: str
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    b_address = f"127.0.0.1:{free_port()}"
    a = await ServerProcess(database_url, ledger, "127.0.0.1:0").start()
    b = ServerProcess(database_url, ledger, b_address)
    addresses = [a.address, b_address]
    midway = threading.Event()  # the watch saw step b complete: c to f are still to come
    breaks: list[str] = []
    try:
        async with WorkflowClient(addresses) as client:
            run = await client.create_workflow(SLOW_CHAIN)
            await client.execute_workflow(run.id)

            async def watch() -> list[WorkflowEvent]:
                events = []
                async for event in client.watch(
                    run.id,
                    reconnect=True,
                    on_reconnect=lambda error, _: breaks.append(error.code.name),
                ):
                    events.append(event)
                    if event.type == EventType.EVENT_TYPE_STEP_COMPLETED and event.step_id == "b":
                        midway.set()
                return events

            watcher = asyncio.create_task(
                watch()
                if flavour == "async"
                else asyncio.to_thread(watch_in_thread, addresses, run.id, midway.set, breaks)
            )
            assert await asyncio.to_thread(midway.wait, 15), "the run never got to step b"
            assert await a.kill() == -9
            await b.start()
            events = await asyncio.wait_for(watcher, 30)
        # A new client: this one, idle in the blocking case, may not have retried B yet (calls
        # fail at once while no server answers, until the next reconnect, at most 2 s apart).
        async with WorkflowClient(addresses) as client:
            final = await client.get_workflow(run.id, timeout=5)
            replayed = [e async for e in client.watch(run.id)]  # B's stored log, whole
    finally:
        await a.close()
        await b.close()

    assert breaks and set(breaks) <= {"UNAVAILABLE", "CANCELLED"}, "the stream never broke"
    assert final.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert [e.sequence for e in events] == list(range(1, final.last_sequence + 1))
    assert events == replayed  # the same events, field by field
    # The run moved servers mid-way: B (another process) ran its last step.
    ledger_lines = read_ledger(str(ledger))
    pid_of_a = next(line["pid"] for line in ledger_lines if line["step"] == "a")
    last = [line for line in ledger_lines if line["step"] == "f" and line["phase"] == "finish"]
    assert [line["pid"] != pid_of_a for line in last] == [True]
