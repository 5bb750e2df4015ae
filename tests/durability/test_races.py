"""Racing commands and retried calls never corrupt a run."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from sluice.client import (
    EventType,
    Workflow,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from tests.support.handlers import Calls
from tests.support.replay import assert_log_matches_state
from tests.support.templates import approval_gate, step, template

S = WorkflowStatus
RESTING = {
    WorkflowStatus.WORKFLOW_STATUS_PAUSED,
    WorkflowStatus.WORKFLOW_STATUS_COMPLETED,
    WorkflowStatus.WORKFLOW_STATUS_FAILED,
    WorkflowStatus.WORKFLOW_STATUS_CANCELLED,
}
# What a successful call of each verb below leaves (a resumed run may already have paused again
# at the next gate, or completed, by the time the reply is built).
EXPECTED_AFTER = [
    {S.WORKFLOW_STATUS_PAUSED},
    {S.WORKFLOW_STATUS_RUNNING, S.WORKFLOW_STATUS_PAUSED, S.WORKFLOW_STATUS_COMPLETED},
    {S.WORKFLOW_STATUS_CANCELLED},
    {S.WORKFLOW_STATUS_RUNNING, S.WORKFLOW_STATUS_PAUSED, S.WORKFLOW_STATUS_COMPLETED},
    {S.WORKFLOW_STATUS_RUNNING, S.WORKFLOW_STATUS_PAUSED, S.WORKFLOW_STATUS_COMPLETED},
    {S.WORKFLOW_STATUS_FAILED},
]


async def test_fifty_concurrent_commands_leave_a_legal_state(
    server: SluiceServer, client: WorkflowClient
) -> None:
    tpl = template(
        "contended",
        step("a", config={"seconds": 0.01}),
        step("b", "sleep", "a", config={"seconds": 0.02}),
        step("c", "sleep", "b", config={"seconds": 0.02}),
        step("d", "sleep", "c", config={"seconds": 0.02}),
        gates=[approval_gate("sign-off", "a"), approval_gate("final", "c")],
    )
    run = await client.create_workflow(tpl)
    await client.execute_workflow(run.id, wait=True, timeout=10)  # paused on sign-off

    verbs = [
        lambda: client.pause_workflow(run.id),
        lambda: client.resume_workflow(run.id),
        lambda: client.cancel_workflow(run.id),
        lambda: client.approve_gate(run.id, "sign-off"),
        lambda: client.approve_gate(run.id, "final"),
        lambda: client.approve_gate(run.id, "final", approve=False),
    ]
    weights = [10, 10, 1, 10, 10, 1]
    rng = random.Random(7)
    chosen = rng.choices(range(len(verbs)), weights=weights, k=50)
    results = await asyncio.gather(*(verbs[i]() for i in chosen), return_exceptions=True)

    outcomes = Counter(type(r).__name__ for r in results)
    assert set(outcomes) <= {"Workflow", "FailedPreconditionError", "AbortedError"}, outcomes
    assert outcomes["Workflow"] >= 1

    # Each winner saw the state its call produced.
    for i, result in zip(chosen, results, strict=True):
        if isinstance(result, Workflow):
            assert result.status in EXPECTED_AFTER[i], (i, result.status)
    enders = [
        r for i, r in zip(chosen, results, strict=True) if i in (2, 5) and isinstance(r, Workflow)
    ]
    assert len(enders) <= 1, "two calls both ended the run"

    # Let what the winners started come to rest, then check the log against the state.
    current = await client.get_workflow(run.id)
    if current.status == WorkflowStatus.WORKFLOW_STATUS_RUNNING:
        async for event in client.watch(run.id, after_sequence=current.last_sequence, follow=True):
            if event.workflow_status != WorkflowStatus.WORKFLOW_STATUS_RUNNING:
                break
    final = await client.get_workflow(run.id)
    assert final.status in RESTING
    assert server.store is not None
    events = await assert_log_matches_state(server.store, "local", run.id)
    terminal = [e for e in events if e.run_status is not None and e.run_status.terminal]
    assert len(terminal) <= 1, "the run ended twice"
    assert not terminal or terminal[0] == events[-1], "events after the run ended"


async def test_duplicate_create_and_execute_yield_one_run_and_one_execution(
    client: WorkflowClient, calls: Calls
) -> None:
    tpl = template("once", step("a", config={"seconds": 0.05}), step("b", "sleep", "a"))
    created = await asyncio.gather(
        *(client.create_workflow(tpl, request_id="create-1") for _ in range(10))
    )
    assert len({w.id for w in created}) == 1
    run_id = created[0].id

    executed = await asyncio.gather(
        *(client.execute_workflow(run_id, request_id="exec-1") for _ in range(10))
    )
    assert all(w.id == run_id for w in executed)
    done = await client.execute_workflow(run_id, request_id="exec-1", wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    # The reply of the first call was "lost": retrying it after completion still answers.
    again = await client.execute_workflow(run_id, request_id="exec-1")
    assert (again.id, again.status) == (run_id, WorkflowStatus.WORKFLOW_STATUS_COMPLETED)

    listed = await client.list_workflows(template_id="once")
    assert [w.id for w in listed.workflows] == [run_id]
    assert len(calls.of(run_id, "a")) == 1 and len(calls.of(run_id, "b")) == 1
    events = [e async for e in client.watch(run_id)]
    assert sum(e.type == EventType.EVENT_TYPE_WORKFLOW_STARTED for e in events) == 1
