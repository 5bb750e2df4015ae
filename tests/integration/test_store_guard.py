"""The store's compare-and-set guard: of two writers holding the same version, one wins."""

from __future__ import annotations

import asyncio

import pytest

from sluice.engine.errors import Conflict, FailedPrecondition
from sluice.engine.handlers import HandlerRegistry
from sluice.engine.model import ExecutionOptions, RunStatus, StepSpec, Template
from sluice.runtime.driver import Engine
from sluice.store.factory import open_store
from tests.support.handlers import Calls, register


async def test_a_stale_writer_loses_and_catches_up(database_url: str) -> None:
    calls = Calls()
    registry = HandlerRegistry()
    register(registry, calls)
    store_a = await open_store(database_url)
    store_b = await open_store(database_url)
    a, b = Engine(store_a, registry), Engine(store_b, registry)
    try:
        template = Template(id="t", steps=(StepSpec("s", "latch", config={"latch": "hold"}),))
        run = await a.create_run("me", template, {})
        await a.execute("me", run.id, ExecutionOptions())
        await asyncio.wait_for(calls.started[f"{run.id}/s"].wait(), 5)

        await b.get_run("me", run.id)
        stale = await b._hold("me", run.id)
        assert stale is not None  # B now holds the run at its current version
        await a.pause("me", run.id, "from A")  # A moves it on

        with pytest.raises(Conflict):
            await b.pause("me", run.id, "from B")
        assert stale.run.status is RunStatus.PAUSED, "the loser took the winner's state"
        with pytest.raises(FailedPrecondition):
            await b.pause("me", run.id, "again")

        stored = await store_a.get_run("me", run.id)
        assert stored is not None
        assert (stored.status, stored.pause_reason) == (RunStatus.PAUSED, "from A")
        events = await store_a.list_events(run.id, 0, 100)
        assert [e.sequence for e in events] == list(range(1, stored.last_sequence + 1))
    finally:
        calls.open("hold")
        await a.stop()
        await b.stop()
        await store_a.close()
        await store_b.close()
