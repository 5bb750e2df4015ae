"""RerunWorkflow and RetryStep over real gRPC: a chain of webhook steps posting to a receiver
started here, whose fourth step fails until the receiver is told otherwise."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from sluice.client import (
    EventType,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StepStatus,
    Workflow,
    WorkflowClient,
    WorkflowStatus,
)
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET, token
from tests.support.receiver import Receiver, running_receiver
from tests.support.templates import step, template

STEPS = ("s1", "s2", "s3", "s4", "s5")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        state.body = b'{"n": 1}'  # what the chain's steps pass on
        yield state


def chain(receiver: Receiver) -> dict[str, Any]:
    """Five webhook steps, each after the one before; each posts what the one before answered,
    so a step's output visibly feeds the next."""
    steps = [step("s1", "http", config={"method": "POST", "url": receiver.url("/s1")})]
    for before, current in itertools.pairwise(STEPS):
        config = {
            "method": "POST",
            "url": receiver.url(f"/{current}"),
            "body": {"previous": f"{{{{ steps.{before}.body.n }}}}"},
        }
        steps.append(step(current, "http", before, config=config))
    return template("five-hooks", *steps)


def outputs(run: Workflow) -> dict[str, Any]:
    return {s.step_id: json_format.MessageToDict(s.output) for s in run.steps}


def delivered(receiver: Receiver, since: int = 0) -> list[str]:
    return [r.path for r in receiver.requests[since:]]


async def failed_at_step_4(client: WorkflowClient, receiver: Receiver) -> Workflow:
    """A run of the chain whose step 4 got a 500; then the receiver answers every step, with
    another body than before (so an output taken over shows it was not fetched again)."""
    since = len(receiver.requests)
    receiver.statuses["/s4"] = 500
    run = await client.create_workflow(chain(receiver))
    failed = await client.execute_workflow(run.id, wait=True, timeout=10)
    assert failed.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert [s.status for s in failed.steps] == [StepStatus.STEP_STATUS_COMPLETED] * 3 + [
        StepStatus.STEP_STATUS_FAILED, StepStatus.STEP_STATUS_SKIPPED,
    ]  # fmt: skip
    assert delivered(receiver, since) == ["/s1", "/s2", "/s3", "/s4"]
    receiver.statuses.clear()
    receiver.body = b'{"n": 2}'
    return failed


async def test_a_rerun_runs_steps_4_and_5_and_reuses_the_outputs_of_1_to_3(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    async with WorkflowClient(server.address) as client:
        original = await failed_at_step_4(client, receiver)

        done = await client.rerun_workflow(original.id, wait=True, timeout=10)

        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
        assert done.id != original.id
        # No new delivery for steps 1-3; 4 and 5 were posted, for the new run.
        assert delivered(receiver, 4) == ["/s4", "/s5"]
        s4, s5 = receiver.requests[4:]
        assert s4.headers["Idempotency-Key"] == f"{done.id}/s4"
        # Step 4 was given step 3's original answer, taken over, not fetched again.
        assert json.loads(s4.body) == {"previous": 1}
        assert json.loads(s5.body) == {"previous": 2}
        before, after = outputs(original), outputs(done)
        assert {s: after[s] for s in STEPS[:3]} == {s: before[s] for s in STEPS[:3]}
        assert after["s4"]["body"] == after["s5"]["body"] == {"n": 2}
        assert [s.attempt for s in done.steps] == [0, 0, 0, 1, 1]
        assert done.metrics.completed_steps == 5

        # The new run shows where it came from, also when read again.
        shown = await client.get_workflow(done.id)
        assert (shown.rerun_of, shown.rerun_from_step_id) == (original.id, "")
        assert list(shown.reused_step_ids) == ["s1", "s2", "s3"]
        assert shown.params == original.params
        assert shown.template == original.template
        events = [e async for e in client.watch(done.id)]
        assert dict(events[0].details) == {"templateId": "five-hooks", "rerunOf": original.id}
        reused = [e for e in events if "reusedFrom" in e.details]
        assert [(e.type, e.step_id) for e in reused] == [
            (EventType.EVENT_TYPE_STEP_COMPLETED, s) for s in STEPS[:3]
        ]
        assert {e.details["reusedFrom"] for e in reused} == {original.id}
        started = [e.step_id for e in events if e.type == EventType.EVENT_TYPE_STEP_STARTED]
        assert started == ["s4", "s5"]
        # The original is untouched.
        assert (await client.get_workflow(original.id)).status == original.status


async def test_a_rerun_from_a_completed_step_runs_it_and_its_dependants_again(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    async with WorkflowClient(server.address) as client:
        original = await failed_at_step_4(client, receiver)

        done = await client.rerun_workflow(original.id, from_step="s2", wait=True, timeout=10)

    assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, done.error
    assert delivered(receiver, 4) == ["/s2", "/s3", "/s4", "/s5"]
    assert json.loads(receiver.requests[4].body) == {"previous": 1}  # s1's original answer
    assert (done.rerun_of, done.rerun_from_step_id) == (original.id, "s2")
    assert list(done.reused_step_ids) == ["s1"]
    assert outputs(done)["s1"] == outputs(original)["s1"]
    assert outputs(done)["s2"]["body"] == {"n": 2}


async def test_a_cancelled_run_can_be_rerun_and_a_rerun_retried_with_its_request_id(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.hold = True  # s1's request waits: the run is cancelled meanwhile
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(chain(receiver))
        await client.execute_workflow(run.id)
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        cancelled = await client.cancel_workflow(run.id)
        receiver.hold = False
        receiver.release_all()

        first = await client.rerun_workflow(run.id, request_id="rerun-1")
        again = await client.rerun_workflow(run.id, request_id="rerun-1", wait=True, timeout=10)

        assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
        assert again.id == first.id
        assert again.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED, again.error
        assert list(again.reused_step_ids) == []
        assert delivered(receiver, 1) == list(f"/{s}" for s in STEPS)  # the rerun's, once
        with pytest.raises(InvalidArgumentError) as reused_id:
            await client.rerun_workflow(run.id, from_step="s2", request_id="rerun-1")
        assert [v.field for v in reused_id.value.violations] == ["request_id"]


async def test_rerun_refusals(start_server: ServerFactory, receiver: Receiver) -> None:
    server = await start_server(webhook_allow=receiver.allow, auth_jwt_secret=SECRET)
    receiver.hold = True
    async with (
        WorkflowClient(server.address, token=token("alice")) as alice,
        WorkflowClient(server.address, token=token("bob")) as bob,
    ):
        running = await alice.create_workflow(chain(receiver))
        await alice.execute_workflow(running.id)
        with pytest.raises(FailedPreconditionError, match="only a FAILED or CANCELLED"):
            await alice.rerun_workflow(running.id)
        receiver.hold = False
        receiver.release_all()
        completed = await alice.execute_workflow(running.id, wait=True, timeout=10)
        assert completed.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
        with pytest.raises(FailedPreconditionError, match="is COMPLETED"):
            await alice.rerun_workflow(running.id)

        failed = await failed_at_step_4(alice, receiver)
        with pytest.raises(InvalidArgumentError) as unknown:
            await alice.rerun_workflow(failed.id, from_step="s9")
        [violation] = unknown.value.violations
        assert violation.field == "from_step_id"
        assert "s1, s2, s3, s4, s5" in violation.description
        with pytest.raises(NotFoundError):
            await bob.rerun_workflow(failed.id)
        assert [w async for w in bob.iter_workflows()] == []  # bob got no run
        assert len(delivered(receiver)) == 5 + 4  # nothing ran for the refused calls


async def test_a_malformed_rerun_or_retry_request_names_its_fields(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    async with grpc.aio.insecure_channel(server.address) as channel:
        api = pb_grpc.WorkflowServiceStub(channel)
        for call in (
            api.RerunWorkflow(pb.RerunWorkflowRequest(workflow_id="x", from_step_id="s" * 65)),
            api.RetryStep(pb.RetryStepRequest(workflow_id="")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with WorkflowClient(server.address) as client:
        with pytest.raises(InvalidArgumentError) as rerun:
            await client.rerun_workflow("x", from_step="s" * 65)
        assert [v.field for v in rerun.value.violations] == ["workflow_id", "from_step_id"]
        with pytest.raises(InvalidArgumentError) as retry:
            await client.retry_step("", "")
        assert [v.field for v in retry.value.violations] == ["workflow_id", "step_id"]


# --- retry now --------------------------------------------------------------------------------


async def test_retry_now_starts_the_next_attempt_without_waiting_out_the_backoff(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.status = 503
    retry = {"maxAttempts": 3, "initialBackoff": "3600s", "maxBackoff": "3600s"}
    tpl = template(
        "slow-retry",
        step("call", "http", config={"url": receiver.url("/flaky")}, retry=retry),
        step("after", "http", "call", config={"url": receiver.url("/after")}),
    )
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(tpl)
        await client.execute_workflow(run.id)
        async with asyncio.timeout(10):
            events = client.watch(run.id)
            async for event in events:
                if event.type == EventType.EVENT_TYPE_STEP_RETRYING:
                    assert event.details["delaySeconds"] == 3600
                    break
            receiver.status = 200

            retried = await client.retry_step(run.id, "call")

            assert retried.steps[0].status == StepStatus.STEP_STATUS_RUNNING
            assert retried.steps[0].attempt == 2
            async for event in events:
                if event.type == EventType.EVENT_TYPE_WORKFLOW_COMPLETED:
                    break
                if event.type == EventType.EVENT_TYPE_STEP_STARTED and event.step_id == "call":
                    assert (event.attempt, dict(event.details)) == (2, {"retryNow": True})
        done = await client.get_workflow(run.id)
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
        assert delivered(receiver) == ["/flaky", "/flaky", "/after"]

        # A step that is not waiting out a backoff cannot be retried now; nor an unknown one.
        with pytest.raises(FailedPreconditionError, match="is COMPLETED"):
            await client.retry_step(run.id, "call")
        with pytest.raises(InvalidArgumentError) as unknown:
            await client.retry_step(run.id, "nope")
        assert [v.field for v in unknown.value.violations] == ["step_id"]


async def test_retry_now_of_a_step_not_retrying_is_refused(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhook_allow=receiver.allow)
    receiver.hold = True
    async with WorkflowClient(server.address) as client:
        run = await client.create_workflow(chain(receiver))
        await client.execute_workflow(run.id)
        await receiver.wait_for(lambda r: len(r.requests) == 1)
        with pytest.raises(FailedPreconditionError, match="step s1 is RUNNING"):
            await client.retry_step(run.id, "s1")
        with pytest.raises(FailedPreconditionError, match="step s2 is PENDING"):
            await client.retry_step(run.id, "s2")
        receiver.hold = False
        receiver.release_all()
        done = await client.execute_workflow(run.id, wait=True, timeout=10)
        assert done.status == WorkflowStatus.WORKFLOW_STATUS_COMPLETED
        assert delivered(receiver) == [f"/{s}" for s in STEPS]
