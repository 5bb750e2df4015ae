"""`sluice rerun` and `sluice retry` end to end: a real server, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import re

from sluice.client import EventType, WorkflowClient
from tests.cli.conftest import Sluice
from tests.support.templates import step, template

PARAMS = {"topic": "Spring Market Update", "platform": "facebook"}


async def cancelled_at_the_gate(client: WorkflowClient) -> str:
    """A content-to-social run cancelled while it waits on publish-approval."""
    run = await client.create_workflow("content-to-social", PARAMS)
    await client.execute_workflow(run.id, wait=True, timeout=10)
    await client.cancel_workflow(run.id)
    return run.id


async def test_rerun_prints_the_new_run_and_waits_when_asked(
    sluice: Sluice, client: WorkflowClient
) -> None:
    original = await cancelled_at_the_gate(client)

    waited = await sluice("rerun", original, "--wait")

    # The approval gate was never decided: the rerun waits on it again (exit 6, as `run`).
    assert waited.code == 6, waited.err
    match = re.fullmatch(
        rf"rerun of {original}: run ([0-9a-f-]{{36}}) is PAUSED "
        r"\(steps reused: generate-content, review-content, schedule-post\)",
        waited.out.strip(),
    )
    assert match, waited.out
    assert (await client.get_workflow(match.group(1))).rerun_of == original

    detached = await sluice("rerun", original, "--from", "review-content", "--json")
    assert detached.code == 0, detached.err
    workflow = json.loads(detached.out)
    assert (workflow["rerunOf"], workflow["rerunFromStepId"]) == (original, "review-content")
    assert workflow["reusedStepIds"] == ["generate-content"]

    approved = await sluice("rerun", original, "--auto-approve", "--wait")
    assert approved.code == 0, approved.err
    assert " is COMPLETED (steps reused: " in approved.out


async def test_rerun_refusals_exit_with_their_codes(sluice: Sluice, client: WorkflowClient) -> None:
    original = await cancelled_at_the_gate(client)
    running = await client.create_workflow("content-to-social", PARAMS)

    unknown_step = await sluice("rerun", original, "--from", "nope")
    assert unknown_step.code == 2
    assert "from_step_id: must be a step of the workflow's template" in unknown_step.err
    not_ended = await sluice("rerun", running.id)
    assert not_ended.code == 4
    assert "only a FAILED or CANCELLED workflow can be rerun" in not_ended.err


async def test_retry_starts_a_retrying_steps_next_attempt(
    sluice: Sluice, client: WorkflowClient
) -> None:
    retry = {"maxAttempts": 3, "initialBackoff": "3600s", "maxBackoff": "3600s"}
    run = await client.create_workflow(template("waits", step("f", "fail", retry=retry)))
    await client.execute_workflow(run.id)
    async with asyncio.timeout(10):
        async for event in client.watch(run.id):
            if event.type == EventType.EVENT_TYPE_STEP_RETRYING:
                break

    retried = await sluice("retry", run.id, "f")

    assert retried.code == 0, retried.err
    assert retried.out.strip() == f"retrying step f now (attempt 2): run {run.id} is RUNNING"
    await client.cancel_workflow(run.id)
    refused = await sluice("retry", run.id, "f")
    assert refused.code == 4 and "is CANCELLED" in refused.err
