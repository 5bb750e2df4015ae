"""A watcher on a server that stops answering without closing the connection (SIGSTOP: a
process paused, a machine cut off) notices within the client's keepalive and, with
`reconnect`, goes on once a server answers: without pings it would wait forever (gRPC's own
defaults: no pings, and a ping's answer awaited 60 s). A healthy server takes the pings."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sluice.client import EventType, UnavailableError, WorkflowClient, WorkflowEvent
from sluice.client.errors import SluiceError
from tests.support.process import ServerProcess, free_port
from tests.support.templates import step, template

E = EventType


async def test_a_watch_notices_a_silent_server_and_goes_on_when_it_answers(
    database_url: str, tmp_path: Path
) -> None:
    server = await ServerProcess(
        database_url, tmp_path / "ledger.jsonl", f"127.0.0.1:{free_port()}"
    ).start()
    slow = template("slow", step("a", "work", config={"seconds": 3}), step("b", "work", "a"))
    breaks: list[SluiceError] = []
    noticed = asyncio.Event()

    def on_reconnect(error: SluiceError, _delay: float) -> None:
        breaks.append(error)
        noticed.set()

    try:
        async with WorkflowClient(server.address, keepalive=1.0) as client:
            run = await client.create_workflow(slow)
            await client.execute_workflow(run.id)
            seen: list[WorkflowEvent] = []
            started = asyncio.Event()

            async def watch() -> None:
                stream = client.watch(
                    run.id, reconnect=True, initial_backoff=0.2, on_reconnect=on_reconnect
                )
                async for event in stream:
                    seen.append(event)
                    if event.type == E.EVENT_TYPE_STEP_STARTED:
                        started.set()

            watcher = asyncio.create_task(watch())
            await asyncio.wait_for(started.wait(), 10)
            # A quiet stream to a server that answers: pinged every second, never broken (a
            # server refusing pings that often would send GOAWAY "too_many_pings" within 3 s).
            await asyncio.sleep(2.5)
            assert breaks == [], f"a healthy server's stream broke: {breaks}"
            server.pause()
            try:
                # Keepalive 1 s, answered within 1 s: noticed in about 2 s.
                await asyncio.wait_for(noticed.wait(), 10)
            finally:
                server.unpause()
            await asyncio.wait_for(watcher, 20)
    finally:
        server.unpause()
        await server.close()

    assert isinstance(breaks[0], UnavailableError)
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1)), "no gap, no repeat"
    assert seen[-1].type == E.EVENT_TYPE_WORKFLOW_COMPLETED
