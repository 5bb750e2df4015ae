"""Killed servers lose nothing: runs finish after a restart, completed steps never run again,
event logs stay gapless and agree with the stored state, and watchers catch up."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from sluice.client import EventType, WorkflowClient, WorkflowEvent, WorkflowStatus
from sluice.store.factory import open_store
from tests.support.plugin import read_ledger
from tests.support.process import ServerProcess, free_port
from tests.support.replay import assert_log_matches_state
from tests.support.templates import step, template

RUNS = 20
DIAMOND = template(
    "diamond-work",
    step("a", "work", config={"seconds": 0.05}),
    step("b", "work", "a", config={"seconds": 0.5}),
    step("c", "work", "a", config={"seconds": 0.7}),
    step("d", "work", "b", "c", config={"seconds": 0.1}),
    step("e", "work", "d", config={"seconds": 0.05}),
)


async def watch_all(client: WorkflowClient, run_id: str, **options: object) -> list[WorkflowEvent]:
    return [e async for e in client.watch(run_id, **options)]  # type: ignore[arg-type]


@pytest.mark.parametrize("death", ["SIGKILL", "SIGTERM"])
async def test_runs_survive_the_death_of_the_server(
    database_url: str, tmp_path: Path, death: str
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    listen = f"127.0.0.1:{free_port()}"
    # A short grace, so SIGTERM cuts off the slow steps and the restart must resume them.
    first = await ServerProcess(database_url, ledger, listen, shutdown_grace_seconds="0.2").start()
    second: ServerProcess | None = None
    try:
        async with WorkflowClient(first.address) as client:
            runs = [await client.create_workflow(DIAMOND) for _ in range(RUNS)]
            for run in runs:
                await client.execute_workflow(run.id)
            # A watcher connected before the death, reconnecting across it.
            watcher = asyncio.create_task(
                watch_all(client, runs[0].id, reconnect=True, initial_backoff=0.05)
            )
            async for event in client.watch(runs[-1].id):  # wait until steps are mid-flight
                if event.type == EventType.EVENT_TYPE_STEP_STARTED and event.step_id == "c":
                    break

            code = await (first.kill() if death == "SIGKILL" else first.terminate())
            assert code == (-9 if death == "SIGKILL" else 0), first.log.decode()

            second = await ServerProcess(database_url, ledger, listen).start()
            finished = await asyncio.wait_for(
                asyncio.gather(*(watch_all(client, r.id, reconnect=True) for r in runs)), 30
            )
            watched = await asyncio.wait_for(watcher, 30)
            final = [await client.get_workflow(r.id) for r in runs]
        assert await second.terminate() == 0, second.log.decode()
    finally:
        await first.close()
        if second is not None:
            await second.close()

    assert [w.status for w in final] == [WorkflowStatus.WORKFLOW_STATUS_COMPLETED] * RUNS
    assert all(events[-1].type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED for events in finished)

    # Every handler call, from both processes.
    attempts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for entry in read_ledger(str(ledger)):
        if entry["phase"] == "start":
            attempts[(str(entry["run"]), str(entry["step"]))].append(int(entry["attempt"]))  # type: ignore[call-overload]
    completed_attempt = {(w.id, s.step_id): s.attempt for w in final for s in w.steps}
    for key, numbers in attempts.items():
        assert numbers == sorted(set(numbers)), f"{key}: an attempt ran twice: {numbers}"
        # No call after the one that completed: a completed step never runs again.
        assert max(numbers) == completed_attempt[key], f"{key}: {numbers}"
    assert set(completed_attempt) == set(attempts), "every step's handler ran"
    rerun = [key for key, numbers in attempts.items() if len(numbers) > 1]
    assert rerun, "the death cut no step off: the test did not exercise recovery"

    store = await open_store(database_url)
    try:
        for run in runs:
            events = await assert_log_matches_state(store, "local", run.id)
            if run.id == runs[0].id:
                assert [e.sequence for e in watched] == [e.sequence for e in events]
    finally:
        await store.close()
