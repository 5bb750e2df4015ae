"""Pause, resume, cancel, illegal transitions, listing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import json_format

from sluice.client import (
    EventType,
    FailedPreconditionError,
    NotFoundError,
    StepStatus,
    Workflow,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.server import SluiceServer
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from sluice.v1.template_pb2 import Template
from sluice.v1.workflow_pb2 import ExecutionOptions
from tests.support.handlers import Calls
from tests.support.templates import approval_gate, step, template


def latched(name: str) -> dict[str, object]:
    """a (waits on a latch) -> b -> c."""
    return template(
        "latched",
        step("a", "latch", config={"latch": name, "output": {"done": True}}),
        step("b", "sleep", "a"),
        step("c", "sleep", "b"),
    )


async def started(calls: Calls, run_id: str, step_id: str) -> None:
    await asyncio.wait_for(calls.started[f"{run_id}/{step_id}"].wait(), timeout=5)


async def test_pause_takes_effect_at_the_step_boundary(
    client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(latched("pause"))
    await client.execute_workflow(run.id)
    await started(calls, run.id, "a")

    paused = await client.pause_workflow(run.id, reason="lunch")
    assert paused.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert paused.pause_reason == "lunch"

    # The running step finishes and is recorded, but nothing new starts while paused.
    async for event in client.watch(run.id, follow=True):
        if event.type == EventType.EVENT_TYPE_WORKFLOW_PAUSED:
            calls.open("pause")
        if event.type == EventType.EVENT_TYPE_STEP_COMPLETED:
            assert event.step_id == "a"
            break
    current = await client.get_workflow(run.id)
    assert current.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED
    assert [s.status for s in current.steps] == [
        StepStatus.STEP_STATUS_COMPLETED,
        StepStatus.STEP_STATUS_PENDING,
        StepStatus.STEP_STATUS_PENDING,
    ]
    assert calls.of(run.id, "b") == []

    done = await client.resume_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert done.metrics.completed_steps == 3


async def test_cancel_stops_running_steps_and_skips_the_rest(
    client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(latched("never"))
    await client.execute_workflow(run.id)
    await started(calls, run.id, "a")

    cancelled = await client.cancel_workflow(run.id, reason="wrong topic")
    assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    assert [s.status for s in cancelled.steps] == [
        StepStatus.STEP_STATUS_CANCELLED,
        StepStatus.STEP_STATUS_SKIPPED,
        StepStatus.STEP_STATUS_SKIPPED,
    ]
    assert cancelled.end_time.seconds > 0
    # The handler was really stopped: its call ended, it did not complete.
    record = calls.of(run.id, "a")[0]
    for _ in range(100):
        if record["end"] is not None:
            break
        await asyncio.sleep(0.01)
    assert record["end"] is not None
    assert (await client.get_workflow(run.id)).status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED


async def test_a_pending_or_paused_run_can_be_cancelled(client: WorkflowClient) -> None:
    pending = await client.create_workflow(template("t", step("a")))
    assert (
        await client.cancel_workflow(pending.id)
    ).status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED


@pytest.mark.parametrize(
    ("setup", "call", "message"),
    [
        ("pending", "pause", "only a RUNNING workflow can be paused"),
        ("pending", "resume", "only a PAUSED workflow can be resumed"),
        ("completed", "pause", "only a RUNNING workflow can be paused"),
        ("completed", "resume", "only a PAUSED workflow can be resumed"),
        ("completed", "cancel", "already COMPLETED"),
        ("completed", "execute", "cannot run again"),
        ("cancelled", "execute", "cannot run again"),
    ],
)
async def test_illegal_transitions_are_failed_precondition(
    client: WorkflowClient, setup: str, call: str, message: str
) -> None:
    run = await client.create_workflow(template("t", step("a")))
    if setup == "completed":
        await client.execute_workflow(run.id, wait=True, timeout=10)
    elif setup == "cancelled":
        await client.cancel_workflow(run.id)
    before = await client.get_workflow(run.id)

    verbs: dict[str, Callable[[str], Awaitable[Workflow]]] = {
        "pause": client.pause_workflow,
        "resume": client.resume_workflow,
        "cancel": client.cancel_workflow,
        "execute": client.execute_workflow,
    }
    with pytest.raises(FailedPreconditionError, match=message):
        await verbs[call](run.id)
    after = await client.get_workflow(run.id)
    assert (after.status, after.last_sequence) == (before.status, before.last_sequence)


async def test_execute_of_a_running_run_changes_nothing(
    client: WorkflowClient, calls: Calls
) -> None:
    run = await client.create_workflow(latched("twice"))
    first = await client.execute_workflow(run.id)
    again = await client.execute_workflow(run.id)
    assert again.status == WorkflowStatus.WORKFLOW_STATUS_RUNNING
    assert again.last_sequence >= first.last_sequence
    calls.open("twice")
    done = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
    assert len(calls.of(run.id, "a")) == 1


async def test_unknown_run_is_not_found(client: WorkflowClient) -> None:
    with pytest.raises(NotFoundError):
        await client.get_workflow("00000000-0000-4000-8000-000000000000")


async def test_list_filters_by_status_and_template_and_paginates(client: WorkflowClient) -> None:
    created = [await client.create_workflow(template("listed", step("a"))) for _ in range(5)]
    other = await client.create_workflow(template("other", step("a")))
    for run in created[:3]:
        await client.execute_workflow(run.id, wait=True, timeout=10)

    completed = await client.list_workflows(statuses=[WorkflowStatus.WORKFLOW_STATUS_COMPLETED])
    assert {w.id for w in completed.workflows} == {r.id for r in created[:3]}

    pages, token = [], ""
    while True:
        page = await client.list_workflows(template_id="listed", page_size=2, page_token=token)
        pages.append([w.id for w in page.workflows])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [i for p in pages for i in p]
    assert listed == [r.id for r in reversed(created)], "newest first, each run once"
    assert other.id not in listed


async def test_resume_changes_one_option_and_keeps_the_other_in_one_call(
    server: SluiceServer,
) -> None:
    """ResumeWorkflow's single-option fields: the server keeps the option not sent, so a client
    need not read the run first (and cannot race another resume doing so)."""
    run_template = template(
        "gated", step("a", "sleep"), step("b", "sleep", "a"), gates=[approval_gate("ok", "a")]
    )
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.WorkflowServiceStub(channel)
        created = await stub.CreateWorkflow(
            pb.CreateWorkflowRequest(template=json_format.ParseDict(run_template, Template()))
        )
        run_id = created.workflow.id
        paused = await stub.ExecuteWorkflow(
            pb.ExecuteWorkflowRequest(
                workflow_id=run_id, wait=True,
                options=ExecutionOptions(notify_on_completion=True),
            )
        )  # fmt: skip
        assert paused.workflow.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED

        done = await stub.ResumeWorkflow(
            pb.ResumeWorkflowRequest(workflow_id=run_id, auto_approve=True, wait=True)
        )
        assert done.workflow.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
        assert done.workflow.options.auto_approve
        assert done.workflow.options.notify_on_completion  # kept, though not sent

        with pytest.raises(grpc.aio.AioRpcError) as both:
            await stub.ResumeWorkflow(
                pb.ResumeWorkflowRequest(
                    workflow_id=run_id, options=ExecutionOptions(), auto_approve=True
                )
            )
        assert both.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "auto_approve: set either options" in (both.value.details() or "")
