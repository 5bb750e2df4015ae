"""Retry jitter: each run's retry waits its own share of the spread, within plus or minus the
policy's fraction, as its STEP_RETRYING event says; a bad fraction is a field violation."""

from __future__ import annotations

import asyncio

from sluice.client import EventType, WorkflowClient
from sluice.server import SluiceServer
from tests.support.workers import RawWorker, task_template

RUNS = 12


async def _retrying_delay(client: WorkflowClient, run_id: str) -> float:
    async with asyncio.timeout(10):
        async for event in client.watch(run_id):
            if event.type == EventType.EVENT_TYPE_STEP_RETRYING:
                delay = event.details["delaySeconds"]
                assert isinstance(delay, float)
                return delay
    raise AssertionError("the run ended without retrying")


async def test_retries_of_runs_that_failed_together_spread_over_the_jitter(
    server: SluiceServer, client: WorkflowClient
) -> None:
    template = task_template(
        "jittered", then=False, retry={"maxAttempts": 2, "initialBackoff": "100s", "jitter": 0.5}
    )
    created = await client.create_template(template)
    assert created.steps[0].retry.jitter == 0.5
    runs = [await client.create_workflow("jittered") for _ in range(RUNS)]
    for run in runs:
        await client.execute_workflow(run.id)
    async with RawWorker(server.address) as worker:
        tasks = await worker.poll(max_tasks=RUNS, wait=10)
        while len(tasks) < RUNS:
            tasks += await worker.poll(max_tasks=RUNS - len(tasks), wait=10)
        for task in tasks:
            await worker.fail(task.task_token, "the line was busy")
    delays = [await _retrying_delay(client, run.id) for run in runs]
    assert all(50 <= d <= 150 for d in delays), delays
    assert len(set(delays)) == RUNS, "each run waits its own time"
    assert max(delays) - min(delays) > 25, delays  # spread, not bunched around 100 s


async def test_a_jitter_outside_0_to_1_is_a_field_violation(client: WorkflowClient) -> None:
    template = task_template(retry={"maxAttempts": 2, "jitter": 1.5})
    result = await client.validate_template(template)
    assert [(v.field, v.description) for v in result.violations] == [
        ("steps[0].retry.jitter", "must be between 0.0 and 1.0 (a fraction of each delay)")
    ]
