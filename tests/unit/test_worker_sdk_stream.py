"""The worker SDK against a scripted WorkerService on loopback (tests/support/fake_workers.py):
credits, reconnects, lease loss and refusals that the real server cannot be made to show on cue.
The end-to-end behaviour with a real server is in tests/e2e/test_python_worker.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from structlog.testing import capture_logs

from sluice.client import Task, TaskError, UnauthenticatedError, Worker
from sluice.client._worker import STREAM_RESULT_BYTES
from sluice.v1 import worker_service_pb2 as pb
from sluice.v1 import worker_service_pb2_grpc as pb_grpc
from tests.support.fake_workers import FakeWorkerService, serve, task


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeWorkerService, str]]:
    service = FakeWorkerService()
    server, address = await serve(service)
    yield service, address
    await server.stop(None)


def make_worker(address: str, **settings: Any) -> Worker:
    defaults: dict[str, Any] = {"token": "", "worker_id": "w-1", "heartbeat_interval": 0.05}
    return Worker(address, **{**defaults, **settings})


async def running(worker: Worker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.run())


async def stopped(worker: Worker, run: Awaitable[None], grace: float = 5.0) -> None:
    await worker.stop(grace)
    async with asyncio.timeout(5):
        await run


async def test_tasks_run_and_each_one_finished_grants_a_credit(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    worker = make_worker(address, concurrency=3)

    @worker.task("echo")
    async def echo(task: Task) -> dict[str, Any]:
        return {"echo": task.config, "step": task.step_id}

    run = await running(worker)
    await service.add(task("a", text="hi"), task("b"))
    await service.until(lambda: len(service.completed) == 2)
    assert service.completed == {
        "a": {"echo": {"text": "hi"}, "step": "a"},
        "b": {"echo": {}, "step": "b"},
    }
    [stream] = service.streams
    assert stream.task_types == ["echo"] and stream.worker_id == "w-1"
    await service.until(lambda: sum(stream.credits) == 5)
    assert stream.credits[0] == 3  # then one per task, possibly two at once
    # A handler this quick reports before its first heartbeat is due back: the report acks it.
    await stopped(worker, run)
    assert stream.half_closed and stream.ended


async def test_a_result_goes_on_the_stream_with_the_credit_it_frees_and_no_call_is_made(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    worker = make_worker(address, concurrency=1)  # b comes only with the credit a's result frees

    @worker.task("echo")
    async def echo(task: Task) -> dict[str, Any]:
        if task.config.get("fail"):
            raise TaskError("out of paper", non_retryable=True, retry_after=2)
        return {"echo": task.config}

    run = await running(worker)
    await service.add(task("a", text="hi"), task("b", fail=True))
    await service.until(lambda: bool(service.streams) and len(service.streams[0].reports) == 2)
    await stopped(worker, run)

    [stream] = service.streams
    completed = pb.StreamTasksRequest(credits=1)
    completed.completed.add(task_token="a").output.update({"echo": {"text": "hi"}})
    failed = pb.StreamTasksRequest(credits=1)
    failed.failed.add(
        task_token="b",
        error="out of paper",
        non_retryable=True,
        retry_after=duration_pb2.Duration(seconds=2),
    )
    # One message per result, its credit in it: no credit of its own, and no call.
    assert stream.credits[0] == 1 and stream.messages == [completed, failed]
    assert [(r.task_token, r.code) for r in stream.reports] == [("a", 0), ("b", 0)]
    assert service.calls == []
    assert service.completed == {"a": {"echo": {"text": "hi"}}} and set(service.failed) == {"b"}


async def test_an_answer_that_comes_with_the_next_task_counts(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    service.answers_with_tasks = True
    worker = make_worker(address, concurrency=1)
    worker.task("echo")(_echo)

    run = await running(worker)
    await service.add(task("a"), task("b"))
    await service.until(lambda: bool(service.streams) and len(service.streams[0].reports) == 2)
    await stopped(worker, run)

    # a's answer came with b: a is done, never reported again by call (nor is b).
    assert [(r.task_token, r.code) for r in service.streams[0].reports] == [("a", 0), ("b", 0)]
    assert service.calls == []


async def test_a_result_unanswered_when_the_stream_breaks_is_reported_again_with_a_call(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    service.unanswered.add("a")  # recorded, but the answer is lost with the stream
    worker = make_worker(address, concurrency=2, initial_backoff=0.01)
    worker.register("echo", _echo)
    run = await running(worker)
    with capture_logs() as logged:
        await service.add(task("a", n=1))
        await service.until(lambda: bool(service.streams) and bool(service.streams[0].messages))
        [message] = service.streams[0].messages
        assert [r.task_token for r in message.completed] == ["a"] and message.credits == 1
        assert worker.running == 1  # the task is not done until its result is answered
        service.answer_calls.clear()  # a's result, sent again, waits for its answer
        await service.break_streams()
        # Sooner than an unanswered result's own timeout (10 s): the break itself sends it again.
        await service.until(lambda: bool(service.calls) and len(service.streams) == 2, timeout=5)
        # a's credit went with its result: the new stream has both slots while a still reports.
        assert service.streams[1].credits == [2] and worker.running == 1
        service.answer_calls.set()
        await service.add(task("b", n=2))
        await service.until(lambda: len(service.streams[1].reports) == 1)
        await stopped(worker, run)

    # The same result again, by the call; the fake answers OK to a result already recorded.
    assert service.calls == [("CompleteTask", "a")]
    assert service.completed == {"a": {"echo": {"n": 1}}, "b": {"echo": {"n": 2}}}
    # No credit for a on the new stream: only b's, with b's result.
    assert service.streams[1].credits == [2, 1]
    unanswered = [line for line in logged if line["event"].startswith("task results unanswered")]
    assert [line["results"] for line in unanswered] == [1]
    a_lines = [line["event"] for line in logged if line.get("step_id") == "a"]
    assert a_lines.count("task completed") == 1


async def test_a_result_the_stream_refuses_is_logged_and_not_reported_again(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    service.moved_on.add("a")  # the lease went to another worker
    worker = make_worker(address)
    worker.register("echo", _echo)
    run = await running(worker)
    with capture_logs() as logged:
        await service.add(task("a"))
        await service.until(lambda: bool(service.streams) and bool(service.streams[0].reports))
        await stopped(worker, run)

    [stream] = service.streams
    assert [(r.task_token, r.code) for r in stream.reports] == [("a", 9)]
    assert [[r.task_token for r in m.completed] for m in stream.messages] == [["a"]]
    assert service.calls == [] and service.completed == {}
    [refused] = [
        line for line in logged if line.get("step_id") == "a" and "result" in line["event"]
    ]
    assert refused["event"] == "task result refused: the lease is gone"
    assert refused["code"] == "FAILED_PRECONDITION" and refused["log_level"] == "warning"


async def test_a_broken_stream_reopens_with_the_credits_of_the_free_slots(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    worker = make_worker(address, concurrency=2, initial_backoff=0.01)
    release = asyncio.Event()

    @worker.task("echo")
    async def held(task: Task) -> dict[str, Any]:
        await release.wait()
        return {"done": task.step_id}

    run = await running(worker)
    await service.add(task("a"))
    await service.until(lambda: "a" in service.heartbeats)
    await service.break_streams()
    await service.until(lambda: len(service.streams) == 2)
    # One handler still runs: the new stream grants the one free slot.
    assert service.streams[0].credits == [2] and service.streams[1].credits == [1]
    release.set()
    await service.until(lambda: "a" in service.completed)
    await service.until(lambda: service.streams[1].credits == [1, 1])
    await stopped(worker, run)


async def test_a_result_too_large_for_the_stream_goes_by_call(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    worker = make_worker(address)
    blob = "x" * STREAM_RESULT_BYTES  # a message too large would break the stream, not one call

    @worker.task("echo")
    async def big(task: Task) -> dict[str, Any]:
        return {"blob": blob}

    run = await running(worker)
    await service.add(task("a"))
    await service.until(lambda: "a" in service.completed)
    await stopped(worker, run)
    assert service.calls == [("CompleteTask", "a")] and service.completed["a"] == {"blob": blob}
    [stream] = service.streams
    assert not any(m.completed or m.failed for m in stream.messages) and stream.half_closed


async def test_a_stop_half_closes_and_reports_the_handlers_that_finish(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    service.hold_half_closed = True  # the stream stays open until a is reported
    worker = make_worker(address, concurrency=2)
    started, release = asyncio.Event(), asyncio.Event()

    @worker.task("echo")
    async def slow(task: Task) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"finished": True}

    run = await running(worker)
    await service.add(task("a"))
    async with asyncio.timeout(5):
        await started.wait()
    stopping = asyncio.create_task(worker.stop(grace=10))
    await service.until(lambda: service.streams[0].half_closed)
    assert not stopping.done()  # waits for the handler
    await service.add(task("b"))  # after the half-close nothing more is sent
    assert not service.streams[0].ended
    release.set()
    async with asyncio.timeout(5):
        await stopping
        await run
    assert service.completed == {"a": {"finished": True}}
    assert service.streams[0].sent == ["a"] and len(service.streams) == 1
    # The stream was open but half-closed when the handler finished: the result went by the
    # call, and the stream ended once it was recorded.
    assert service.calls == [("CompleteTask", "a")] and service.streams[0].messages == []
    assert service.streams[0].ended


async def test_a_handler_still_running_after_the_grace_is_cancelled_and_reports_a_retryable_failure(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    worker = make_worker(address)
    started, saw_cancel = asyncio.Event(), asyncio.Event()

    @worker.task("echo")
    async def forever(task: Task) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.set()
            raise
        return {}

    run = await running(worker)
    await service.add(task("a"))
    async with asyncio.timeout(5):
        await started.wait()
    await stopped(worker, run, grace=0.05)
    assert saw_cancel.is_set()
    # The next attempt need not wait for the lease to run out.
    assert service.completed == {}
    (failure,) = service.failed.values()
    assert (failure.error, failure.non_retryable) == (
        "the worker stopped before the task finished", False,
    )  # fmt: skip


@pytest.mark.parametrize("answer", ["cancelled", "stale"])
async def test_a_cancelled_run_or_a_lost_lease_cancels_the_handler_without_a_report(
    fake: tuple[FakeWorkerService, str], answer: str
) -> None:
    service, address = fake
    worker = make_worker(address)
    started, saw_cancel = asyncio.Event(), asyncio.Event()

    @worker.task("echo")
    async def forever(task: Task) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            saw_cancel.set()
            raise
        return {}

    run = await running(worker)
    await service.add(task("a"))
    async with asyncio.timeout(5):
        await started.wait()
    (service.cancelled if answer == "cancelled" else service.stale).add("a")
    async with asyncio.timeout(5):
        await saw_cancel.wait()
    await service.until(lambda: sum(service.streams[0].credits) == 9)  # the slot is free again
    assert service.completed == {} and service.failed == {}
    await stopped(worker, run)


async def test_an_output_the_server_refuses_fails_the_step_without_retry(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    service.refuse_output.add("a")
    worker = make_worker(address)

    @worker.task("echo")
    async def big(task: Task) -> dict[str, Any]:
        return {"blob": "x"}

    run = await running(worker)
    await service.add(task("a"))
    await service.until(lambda: "a" in service.failed)
    failure = service.failed["a"]
    assert failure.non_retryable
    assert failure.error == "the server refused the output: output: larger than 1 MiB"
    # The output was refused on the stream (INVALID_ARGUMENT), the failure then reported by call.
    [stream] = service.streams
    assert [(r.task_token, r.code) for r in stream.reports] == [("a", 3)]
    assert service.calls == [("FailTask", "a")]
    await stopped(worker, run)


async def test_a_task_type_without_a_handler_fails_without_retry(
    fake: tuple[FakeWorkerService, str],
) -> None:
    service, address = fake
    worker = make_worker(address)
    worker.register("echo", _echo)
    run = await running(worker)
    await service.add(task("a", task_type="other"))
    await service.until(lambda: "a" in service.failed)
    assert service.failed["a"].non_retryable
    assert service.failed["a"].error == "no handler for task type 'other'"
    await stopped(worker, run)


async def test_a_refused_stream_is_raised_by_run(fake: tuple[FakeWorkerService, str]) -> None:
    service, address = fake
    service.refuse_streams = grpc.StatusCode.UNAUTHENTICATED
    worker = make_worker(address)
    worker.register("echo", _echo)
    with pytest.raises(UnauthenticatedError, match="refused by the fake"):
        async with asyncio.timeout(5):
            await worker.run()


async def test_a_server_that_is_down_is_retried_until_it_comes_up() -> None:
    service = FakeWorkerService()
    server, address = await serve(service)
    await server.stop(None)  # a free port nobody listens on, for now
    worker = make_worker(address, initial_backoff=0.01, max_backoff=0.05)
    worker.register("echo", _echo)
    run = await running(worker)
    server = grpc.aio.server()
    pb_grpc.add_WorkerServiceServicer_to_server(service, server)
    server.add_insecure_port(address)
    await server.start()
    try:
        await service.add(task("a", n=1))
        await service.until(lambda: "a" in service.completed)
        assert service.completed["a"] == {"echo": {"n": 1.0}}
        await stopped(worker, run)
    finally:
        await server.stop(None)


async def _echo(task: Task) -> dict[str, Any]:
    return {"echo": task.config}
