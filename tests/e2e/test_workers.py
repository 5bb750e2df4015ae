"""Task steps served by workers (sluice.v1.WorkerService), spoken with the raw stubs: tasks go
out only against credits, results with a stale token change nothing, every timeout fails the
attempt and the retry policy decides, a broken stream hands its tasks back at once."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import grpc
import pytest

from sluice.client import EventType, StepStatus, WorkflowClient, WorkflowStatus
from sluice.client.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from sluice.server import SluiceServer
from tests.conftest import ServerFactory
from tests.support.workers import RawWorker, TaskStream, finished, task_template

COMPLETED = WorkflowStatus.WORKFLOW_STATUS_COMPLETED


async def _events(client: WorkflowClient, run_id: str) -> list[Any]:
    return [e async for e in client.watch(run_id)]


async def test_a_worker_runs_a_task_step_whose_output_feeds_the_next_step(
    server: SluiceServer, client: WorkflowClient
) -> None:
    run = await client.create_workflow(task_template(), {"text": "hi"})
    await client.execute_workflow(run.id)
    async with RawWorker(server.address) as worker:
        task = await worker.poll_one()
        assert (task.workflow_id, task.step_id, task.attempt) == (run.id, "work", 1)
        assert task.idempotency_key == f"{run.id}/work"
        assert dict(task.config) == {"text": "hi"} and dict(task.params) == {"text": "hi"}
        assert task.template_id == "remote" and task.retries_left == 0
        assert task.deadline.ToDatetime() > task.heartbeat_deadline.ToDatetime()
        assert await worker.heartbeat(task.task_token) is False
        await worker.complete(task.task_token, {"shout": "HI"})
        # The same report again is answered OK and changes nothing.
        await worker.complete(task.task_token, {"shout": "HI"})
        with pytest.raises(FailedPreconditionError, match="another result"):
            await worker.complete(task.task_token, {"shout": "something else"})

    done = await finished(client, run.id)
    assert done.status == COMPLETED
    steps = {s.step_id: s for s in done.steps}
    assert dict(steps["work"].output) == {"shout": "HI"}
    assert steps["after"].output["result"] == "HI"
    started = [e for e in await _events(client, run.id) if e.step_id == "work"]
    assert [(e.type, e.attempt) for e in started] == [
        (EventType.EVENT_TYPE_STEP_STARTED, 1),
        (EventType.EVENT_TYPE_STEP_COMPLETED, 1),
    ]


async def test_a_stream_never_holds_more_tasks_than_its_credits(
    server: SluiceServer, client: WorkflowClient
) -> None:
    template = task_template(then=False)
    runs = [await client.create_workflow(template, {"text": f"t{i}"}) for i in range(100)]
    for run in runs:
        await client.execute_workflow(run.id)
    async with RawWorker(server.address) as worker:
        stream = TaskStream(worker, "echo", credits=2)
        first = [await stream.next_task(), await stream.next_task()]
        # The server's own count: what it handed out, whatever is still in flight.
        queues = await worker.queues()
        assert (queues["echo"].queued, queues["echo"].active) == (98, 2)
        await worker.complete(first[0].task_token, {"shout": "done"})
        queues = await worker.queues()
        assert (queues["echo"].queued, queues["echo"].active) == (98, 1)  # no credit: none sent

        stream.grant(1)
        third = await stream.next_task()
        assert third.task_token not in {t.task_token for t in first}
        queues = await worker.queues()
        assert (queues["echo"].queued, queues["echo"].active) == (97, 2)
        assert queues["echo"].oldest_age.ToTimedelta() > timedelta(0)

        # A clean half-close: nothing more is sent; the worker keeps what it holds, and the
        # stream ends once it has reported them.
        stream.half_close()
        await worker.complete(third.task_token, {"shout": "done"})
        await worker.complete(first[1].task_token, {"shout": "done"})
        assert await stream.end() == grpc.StatusCode.OK
        queues = await worker.queues()
        assert (queues["echo"].queued, queues["echo"].active) == (97, 0)


async def test_a_broken_stream_hands_its_task_to_the_next_worker_at_once(
    start_server: ServerFactory,
) -> None:
    # A long heartbeat window: the task must move because the stream broke, not because the
    # worker missed its window.
    server = await start_server(task_ack_timeout=timedelta(minutes=5))
    async with WorkflowClient(server.address) as client, RawWorker(server.address) as worker:
        run = await client.create_workflow(task_template(), {"text": "hi"})
        await client.execute_workflow(run.id)
        stream = TaskStream(worker, "echo", credits=1)
        lost = await stream.next_task()
        assert await worker.heartbeat(lost.task_token) is False
        stream.cancel()

        again = await worker.poll_one(wait=10)
        assert (again.step_id, again.attempt) == ("work", 1)  # the same attempt, a new lease
        assert again.task_token != lost.task_token
        with pytest.raises(FailedPreconditionError, match="handed to another worker"):
            await worker.complete(lost.task_token, {"shout": "late"})
        await worker.complete(again.task_token, {"shout": "HI"})
        done = await finished(client, run.id)
    assert done.status == COMPLETED
    assert dict({s.step_id: s for s in done.steps}["work"].output) == {"shout": "HI"}


async def test_a_task_no_worker_takes_times_out_and_the_retry_policy_decides(
    server: SluiceServer, client: WorkflowClient
) -> None:
    template = task_template(
        task_type="nobody-serves-this",
        scheduleToStartTimeout="0.2s",
        retry={"maxAttempts": 2, "initialBackoff": "0.1s"},
    )
    run = await client.create_workflow(template)
    done = await client.execute_workflow(run.id, wait=True)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    events = [e for e in await _events(client, run.id) if e.step_id == "work"]
    assert [(e.type, e.attempt) for e in events] == [
        (EventType.EVENT_TYPE_STEP_STARTED, 1),
        (EventType.EVENT_TYPE_STEP_RETRYING, 1),
        (EventType.EVENT_TYPE_STEP_STARTED, 2),
        (EventType.EVENT_TYPE_STEP_FAILED, 2),
    ]
    assert "no worker took the task within 0.2s" in events[-1].details["error"]
    async with RawWorker(server.address) as worker:
        assert await worker.queues() == {}


async def test_a_task_never_acknowledged_times_out_and_its_token_goes_stale(
    start_server: ServerFactory,
) -> None:
    server = await start_server(task_ack_timeout=timedelta(seconds=0.3))
    async with WorkflowClient(server.address) as client, RawWorker(server.address) as worker:
        template = task_template(retry={"maxAttempts": 2, "initialBackoff": "0s"})
        run = await client.create_workflow(template, {"text": "hi"})
        await client.execute_workflow(run.id)
        silent = await worker.poll_one()
        retried = await worker.poll_one(wait=10)  # attempt 2, once attempt 1 timed out
        assert (silent.attempt, retried.attempt) == (1, 2)
        with pytest.raises(FailedPreconditionError, match="attempt 1 of step 'work' is over"):
            await worker.complete(silent.task_token, {"shout": "late"})
        assert await worker.heartbeat(retried.task_token) is False
        await worker.complete(retried.task_token, {"shout": "HI"})
        done = await finished(client, run.id)
        assert done.status == COMPLETED
        retrying = [
            e for e in await _events(client, run.id) if e.type == EventType.EVENT_TYPE_STEP_RETRYING
        ]
    assert (
        "neither acknowledged the task nor reported on it within 0.3s"
        in (retrying[0].details["error"])
    )


async def test_failures_follow_the_retry_policy_unless_non_retryable(
    server: SluiceServer, client: WorkflowClient
) -> None:
    template = task_template(retry={"maxAttempts": 3, "initialBackoff": "10s"})
    async with RawWorker(server.address) as worker:
        run = await client.create_workflow(template)
        await client.execute_workflow(run.id)
        first = await worker.poll_one()
        assert first.retries_left == 2
        # The worker's own backoff replaces the policy's 10 s.
        await worker.fail(first.task_token, "upstream busy", retry_after={"nanos": 50_000_000})
        second = await worker.poll_one(wait=5)
        assert (second.attempt, second.retries_left) == (2, 1)
        await worker.fail(second.task_token, "bad input", non_retryable=True)
        done = await finished(client, run.id)
    assert done.status == WorkflowStatus.WORKFLOW_STATUS_FAILED
    work = {s.step_id: s for s in done.steps}["work"]
    assert (work.status, work.attempt, work.error) == (
        StepStatus.STEP_STATUS_FAILED, 2, "bad input",
    )  # fmt: skip


async def test_cancelling_a_run_tells_its_worker_and_refuses_its_result(
    server: SluiceServer, client: WorkflowClient
) -> None:
    async with RawWorker(server.address) as worker:
        run = await client.create_workflow(task_template())
        await client.execute_workflow(run.id)
        task = await worker.poll_one()
        assert await worker.heartbeat(task.task_token) is False
        cancelled = await client.cancel_workflow(run.id)
        assert cancelled.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
        assert await worker.heartbeat(task.task_token) is True
        with pytest.raises(FailedPreconditionError, match="cancelled"):
            await worker.complete(task.task_token, {"shout": "too late"})
        final = await client.get_workflow(run.id)
    assert final.status == WorkflowStatus.WORKFLOW_STATUS_CANCELLED
    assert {s.step_id: s for s in final.steps}["work"].status == StepStatus.STEP_STATUS_CANCELLED


async def test_a_restarted_server_takes_the_result_of_a_task_its_predecessor_handed_out(
    start_server: ServerFactory,
) -> None:
    first = await start_server()
    async with WorkflowClient(first.address) as client, RawWorker(first.address) as worker:
        run = await client.create_workflow(task_template(), {"text": "hi"})
        await client.execute_workflow(run.id)
        task = await worker.poll_one()
        assert await worker.heartbeat(task.task_token) is False
    await first.stop()

    second = await start_server()
    async with WorkflowClient(second.address) as client, RawWorker(second.address) as worker:
        await worker.complete(task.task_token, {"shout": "HI"})  # the worker carried on
        done = await finished(client, run.id)
        starts = [
            e for e in await _events(client, run.id)
            if e.step_id == "work" and e.type == EventType.EVENT_TYPE_STEP_STARTED
        ]  # fmt: skip
    assert done.status == COMPLETED
    assert len(starts) == 1  # not run again


async def test_bad_reports_are_invalid_argument_with_field_violations(
    server: SluiceServer, client: WorkflowClient
) -> None:
    async with RawWorker(server.address) as worker:
        with pytest.raises(InvalidArgumentError) as caught:
            await worker.complete("not-a-token")
        assert {v.field for v in caught.value.violations} == {"task_token"}
        with pytest.raises(InvalidArgumentError) as caught:
            await worker.poll("bad type!", max_tasks=500)
        assert {v.field for v in caught.value.violations} == {"task_types[0]", "max_tasks"}

        run = await client.create_workflow(task_template())
        await client.execute_workflow(run.id)
        task = await worker.poll_one()
        with pytest.raises(InvalidArgumentError) as caught:
            await worker.fail(task.task_token, "")
        assert {v.field for v in caught.value.violations} == {"error"}
        with pytest.raises(InvalidArgumentError) as caught:
            await worker.complete(task.task_token, {"blob": "x" * (1024 * 1024 + 1)})
        assert {v.field for v in caught.value.violations} == {"output"}
        # Nothing was recorded: the task is still the worker's to finish.
        await worker.complete(task.task_token, {"shout": "ok"})
    assert (await finished(client, run.id)).status == COMPLETED


async def test_validation_names_task_fields_and_still_catches_typos(
    client: WorkflowClient,
) -> None:
    template = task_template()
    template["steps"][0].pop("taskType")
    template["steps"][1]["type"] = "transfrom"
    template["steps"].append({"id": "odd", "type": "generate", "taskType": "x"})
    result = await client.validate_template(template)
    assert {(v.field, v.description) for v in result.violations} >= {
        ("steps[0].task_type", 'is required for a step of type "task"'),
        ("steps[1].type", "unknown step type 'transfrom'"),
        ("steps[2].task_type", 'only a step of type "task" names a task type'),
    }


async def test_a_worker_sees_only_its_own_users_tasks(start_server: ServerFactory) -> None:
    from tests.support.crypto import SECRET, token

    server = await start_server(auth_jwt_secret=SECRET)
    alice = WorkflowClient(server.address, token=token("alice"))
    try:
        run = await alice.create_workflow(task_template())
        await alice.execute_workflow(run.id)
        async with (
            RawWorker(server.address, token("alice")) as alices,
            RawWorker(server.address, token("bob")) as bobs,
        ):
            assert await bobs.poll(wait=0) == []
            assert await bobs.queues() == {}
            task = await alices.poll_one()
            for report in (
                bobs.complete(task.task_token, {"shout": "mine now"}),
                bobs.heartbeat(task.task_token),
            ):
                with pytest.raises(NotFoundError):
                    await report
            await alices.complete(task.task_token, {"shout": "HI"})
        assert (await finished(alice, run.id)).status == COMPLETED
    finally:
        await alice.close()


async def test_polls_wait_for_a_task_and_wake_when_it_is_queued(
    server: SluiceServer, client: WorkflowClient
) -> None:
    async with RawWorker(server.address) as worker:
        polling = asyncio.ensure_future(worker.poll(wait=30))
        run = await client.create_workflow(task_template())
        await client.execute_workflow(run.id)
        async with asyncio.timeout(10):  # far less than the poll's 30 s: woken, not timed out
            (task,) = await polling
        assert task.workflow_id == run.id
        assert await worker.poll(wait=0) == []


async def test_a_results_answer_rides_with_the_tasks_its_commit_hands_out(
    server: SluiceServer, client: WorkflowClient
) -> None:
    # a -> (b, c): a's result, recorded by the commit that starts b and c (on SQLite), frees
    # the credit that commit hands b or c to, so the answer goes out with them, not in a
    # message of its own. (On PostgreSQL a result is stored before its step's commit, and is
    # answered then, alone.) Every result gets exactly one answer.
    steps = [{"id": "a", "type": "task", "taskType": "echo"}] + [
        {"id": s, "type": "task", "taskType": "echo", "dependencies": ["a"]} for s in "bc"
    ]
    riding = not os.environ.get("SLUICE_TEST_DATABASE_URL", "").startswith("postgresql")
    run = await client.create_workflow({"id": "fan", "name": "fan", "steps": steps})
    await client.execute_workflow(run.id)
    async with RawWorker(server.address) as worker:
        stream = TaskStream(worker, "echo", credits=2)
        a = await stream.next_task()
        stream.report(completed={a.task_token: {}}, credits=1)
        messages = [await stream.next_message() for _ in range(2 if riding else 3)]

        tasks = [m.task for m in messages if m.HasField("task")]
        assert sorted(t.step_id for t in tasks) == ["b", "c"]
        answers = [(r.task_token, r.code) for m in messages for r in m.reports]
        assert answers == [(a.task_token, 0)]
        if riding:
            assert messages[0].HasField("task") and messages[0].reports
        first, second = tasks
        stream.report(completed={first.task_token: {}, second.task_token: {}})
        answered = [r.task_token for r in await stream.next_reports()]
        if len(answered) == 1:  # answered as each was recorded, not together
            answered += [r.task_token for r in await stream.next_reports()]
        assert sorted(answered) == sorted([first.task_token, second.task_token])
        stream.half_close()
        assert await stream.end() == grpc.StatusCode.OK
    assert (await finished(client, run.id)).status == COMPLETED


async def test_under_a_backlog_the_credit_a_result_frees_takes_the_oldest_task_with_its_answer(
    server: SluiceServer, client: WorkflowClient
) -> None:
    # Three runs' tasks wait for a worker holding one credit. Each result sent with a credit
    # frees it; on SQLite the commit recording the result takes the oldest waiting task with
    # that credit, so the task goes out with the result's answer, in one message. (On
    # PostgreSQL the stream takes it itself: task and answer come apart.) Oldest first, and
    # never more than the one credit, either way.
    riding = not os.environ.get("SLUICE_TEST_DATABASE_URL", "").startswith("postgresql")
    runs = [await client.create_workflow(task_template(then=False)) for _ in range(3)]
    for run in runs:
        await client.execute_workflow(run.id)
    async with RawWorker(server.address) as worker:
        stream = TaskStream(worker, "echo", credits=1)
        task = await stream.next_task()
        taken = [task.workflow_id]
        for _ in range(2):
            stream.report(completed={task.task_token: {}}, credits=1)
            message = await stream.next_message()
            if riding:
                assert message.HasField("task"), "the next task did not come with the answer"
            else:
                while not message.HasField("task") or not message.reports:
                    more = await stream.next_message()
                    message.MergeFrom(more)
            assert [(r.task_token, r.code) for r in message.reports] == [(task.task_token, 0)]
            task = message.task
            taken.append(task.workflow_id)
        stream.report(completed={task.task_token: {}})
        assert [r.task_token for r in await stream.next_reports()] == [task.task_token]
        stream.half_close()
        assert await stream.end() == grpc.StatusCode.OK
    assert taken == [run.id for run in runs]
    for run in runs:
        assert (await finished(client, run.id)).status == COMPLETED


async def test_results_reported_on_the_stream_are_recorded_and_answered_like_the_calls(
    server: SluiceServer, client: WorkflowClient
) -> None:
    template = task_template(then=False, retry={"maxAttempts": 1})
    runs = [await client.create_workflow(template, {"text": f"t{i}"}) for i in range(3)]
    for run in runs:
        await client.execute_workflow(run.id)
    async with RawWorker(server.address) as worker:
        stream = TaskStream(worker, "echo", credits=2)
        first, second = await stream.next_task(), await stream.next_task()

        # Two results in one message: both recorded, each answered OK.
        stream.report(
            completed={first.task_token: {"shout": "ONE"}},
            failed={second.task_token: "the printer is on fire"},
        )
        reports = await stream.next_reports()
        assert {(r.task_token, r.code) for r in reports} == {
            (first.task_token, 0),
            (second.task_token, 0),
        }
        # The same result again is OK; another result, a bad token and a bad output are
        # answered with the status the unary calls give, and the stream carries on.
        stream.report(completed={first.task_token: {"shout": "ONE"}})
        assert [r.code for r in await stream.next_reports()] == [grpc.StatusCode.OK.value[0]]
        stream.report(completed={first.task_token: {"shout": "TWO"}})
        (refused,) = await stream.next_reports()
        assert refused.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert "another result" in refused.message
        stream.report(completed={"not-a-token": {}})
        (bad,) = await stream.next_reports()
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "task_token" in bad.message

        # One more credit, one more task; its result on the stream as it half-closes.
        stream.grant(1)
        third = await stream.next_task()
        stream.report(completed={third.task_token: {"shout": "THREE"}})
        stream.half_close()  # the answer still comes before the stream ends
        assert [r.code for r in await stream.next_reports()] == [0]
        assert await stream.end() == grpc.StatusCode.OK

    outcomes = {}
    for run in runs:
        done = await finished(client, run.id)
        outcomes[done.id] = (done.status, dict(done.steps[0].output), done.steps[0].error)
    assert outcomes[first.workflow_id] == (COMPLETED, {"shout": "ONE"}, "")
    assert outcomes[second.workflow_id][0] == WorkflowStatus.WORKFLOW_STATUS_FAILED
    assert "the printer is on fire" in outcomes[second.workflow_id][2]
    assert outcomes[third.workflow_id] == (COMPLETED, {"shout": "THREE"}, "")
