"""How many WatchWorkflow streams a server holds: all of a burst of thousands open and get every
event; past SLUICE_MAX_WATCHERS a stream is refused at once with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from sluice.client import (
    EventType,
    ResourceExhaustedError,
    SluiceError,
    WorkflowClient,
    WorkflowEvent,
)
from tests.conftest import ServerFactory
from tests.support.handlers import Calls
from tests.support.process import ServerProcess
from tests.support.templates import step, template


async def test_past_the_server_wide_limit_a_stream_is_refused_and_the_open_ones_go_on(
    start_server: ServerFactory, calls: Calls
) -> None:
    server = await start_server(max_watchers=20)
    async with WorkflowClient(server.address) as client:
        latched = template(
            "latched", step("a", "latch", config={"latch": "go"}), step("b", "sleep", "a")
        )
        runs = [await client.create_workflow(latched) for _ in range(3)]
        # 10 + 10 on two runs: the limit is the server's, not a run's (100 by default).
        streams = [client.watch(runs[i % 2].id) for i in range(20)]
        firsts = [await asyncio.wait_for(anext(stream), 5) for stream in streams]
        assert {e.type for e in firsts} == {EventType.EVENT_TYPE_WORKFLOW_CREATED}

        reconnects: list[SluiceError] = []
        refused = client.watch(
            runs[2].id, reconnect=True, on_reconnect=lambda error, _: reconnects.append(error)
        )
        with pytest.raises(ResourceExhaustedError) as caught:
            await asyncio.wait_for(anext(refused), 5)
        assert "already has 20 WatchWorkflow streams open" in caught.value.message
        assert "SLUICE_MAX_WATCHERS" in caught.value.message
        assert reconnects == [], "a refusal is not a broken stream: no retry"

        for run in runs[:2]:
            await client.execute_workflow(run.id)
        calls.open("go")
        rest = await asyncio.wait_for(asyncio.gather(*(_rest(s) for s in streams)), 15)
        for i, events in enumerate(rest):
            final = await client.get_workflow(runs[i % 2].id)
            assert [e.sequence for e in [firsts[i], *events]] == list(
                range(1, final.last_sequence + 1)
            )
            assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED

        # The ended streams gave their slots back.
        await asyncio.wait_for(anext(client.watch(runs[2].id)), 5)


async def _rest(stream: AsyncGenerator[WorkflowEvent, None]) -> list[WorkflowEvent]:
    return [event async for event in stream]


# Runs x watchers: 5,000 streams opened at once. Before the gRPC backlog was sized for the
# watcher limit, a burst like this opened about 2,700 of 4,000 and 4,100 of 10,000 streams on
# 2 cores; the rest were cancelled (CANCELLED) before their first event.
RUNS = 500
WATCHERS_PER_RUN = 10


async def test_thousands_of_streams_opened_at_once_all_get_every_event(tmp_path: Path) -> None:
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}", tmp_path / "ledger.jsonl",
        "127.0.0.1:0",
    )  # fmt: skip
    await server.start()
    try:
        async with WorkflowClient(server.address) as client:
            one_step = template("one-step", step("a", "work", config={"seconds": 0.2}))
            runs: list[str] = []
            for _ in range(0, RUNS, 50):
                batch = [client.create_workflow(one_step) for _ in range(50)]
                runs += [run.id for run in await asyncio.gather(*batch)]

            total = RUNS * WATCHERS_PER_RUN
            opened = 0
            all_open = asyncio.Event()

            async def watch(run_id: str) -> list[WorkflowEvent]:
                nonlocal opened
                events = []
                async for event in client.watch(run_id):
                    events.append(event)
                    if len(events) == 1:
                        opened += 1
                        if opened == total:
                            all_open.set()
                return events

            watchers = [asyncio.create_task(watch(runs[i % RUNS])) for i in range(total)]
            waiting = asyncio.create_task(all_open.wait())
            try:
                # A stream that fails ends its task: stop waiting at the first one.
                done, _ = await asyncio.wait(
                    [waiting, *watchers], timeout=45, return_when=asyncio.FIRST_COMPLETED
                )
                if waiting not in done:
                    pytest.fail(f"{opened} of {total} streams opened; {_first_error(done)}")
                await asyncio.gather(*(client.execute_workflow(run_id) for run_id in runs))
                logs = await asyncio.wait_for(asyncio.gather(*watchers), 45)
            finally:
                for task in [waiting, *watchers]:
                    task.cancel()
                await asyncio.gather(waiting, *watchers, return_exceptions=True)
            last = {run_id: (await client.get_workflow(run_id)).last_sequence for run_id in runs}
    finally:
        await server.close()
    for i, events in enumerate(logs):
        assert [e.sequence for e in events] == list(range(1, last[runs[i % RUNS]] + 1))
        assert events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED


def _first_error(done: set[asyncio.Task[object]]) -> str:
    for task in done:
        if task.exception() is not None:
            return f"one failed with {task.exception()!r}"
    return "none failed (timed out)"
