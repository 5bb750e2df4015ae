"""A scripted WorkerService on a loopback port, for the worker SDK's tests of what the real
server cannot be made to do on cue: break a stream while tasks are held or results unanswered,
refuse a heartbeat or a result. It keeps the contract's rules that the SDK relies on (never more
tasks than credits; results on the stream recorded as the calls would and answered with a
TaskReport each, before a half-closed stream ends with OK) and records every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format

from sluice.v1 import worker_service_pb2 as pb
from sluice.v1 import worker_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
Status = tuple[grpc.StatusCode, str]
OK: Status = (grpc.StatusCode.OK, "")
MOVED_ON: Status = (grpc.StatusCode.FAILED_PRECONDITION, "the lease moved on")
ANOTHER_RESULT: Status = (grpc.StatusCode.FAILED_PRECONDITION, "another result was recorded")


@dataclass
class StreamRecord:
    """One StreamTasks call as the fake saw it."""

    task_types: list[str]
    worker_id: str
    credits: list[int] = field(default_factory=list)  # the first message's, then each grant
    messages: list[pb.StreamTasksRequest] = field(default_factory=list)  # after the first
    sent: list[str] = field(default_factory=list)  # task tokens
    reports: list[pb.TaskReport] = field(default_factory=list)  # answers, as they go out
    half_closed: bool = False
    ended: bool = False
    available: int = 0  # credits not yet spent


class FakeWorkerService(pb_grpc.WorkerServiceServicer):
    def __init__(self) -> None:
        self.queue: list[pb.Task] = []
        self.streams: list[StreamRecord] = []
        self.heartbeats: list[str] = []
        self.completed: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, pb.FailTaskRequest] = {}
        # CompleteTask and FailTask calls, as (method, task token).
        self.calls: list[tuple[str, str]] = []
        # Tokens whose heartbeats answer `cancelled`, or FAILED_PRECONDITION.
        self.cancelled: set[str] = set()
        self.stale: set[str] = set()
        # A completion of these tokens is refused with INVALID_ARGUMENT (a bad output).
        self.refuse_output: set[str] = set()
        # Any result of these tokens is refused with FAILED_PRECONDITION (the lease moved on).
        self.moved_on: set[str] = set()
        # Answers to results whose message's credits let a queued task go out ride with that
        # task, as the server's do when one commit records the one and hands out the other.
        self.answers_with_tasks = False
        # Results of these tokens on a stream are recorded but left unanswered, as if the
        # stream broke before the answer went out.
        self.unanswered: set[str] = set()
        # CompleteTask and FailTask wait for this before they record and answer (set: at once).
        self.answer_calls = asyncio.Event()
        self.answer_calls.set()
        # A half-closed stream ends at once, unless this is set: then, as the real server does,
        # once every task sent on it has a result recorded.
        self.hold_half_closed = False
        # StreamTasks answers this code at once when set.
        self.refuse_streams: grpc.StatusCode | None = None
        self._changed = asyncio.Condition()
        self._break = False

    # --- what tests do --------------------------------------------------------------------------

    async def add(self, *tasks: pb.Task) -> None:
        async with self._changed:
            self.queue.extend(tasks)
            self._changed.notify_all()

    async def break_streams(self) -> None:
        """Abort every open stream with UNAVAILABLE (as a server going away would)."""
        async with self._changed:
            self._break = True
            self._changed.notify_all()

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the service ----------------------------------------------------------------------------

    async def StreamTasks(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.StreamTasksRequest], context: Context
    ) -> None:
        if self.refuse_streams is not None:
            await context.abort(self.refuse_streams, "refused by the fake")
        first = await anext(aiter(request_iterator))
        record = StreamRecord(list(first.task_types), first.worker_id, [first.credits])
        record.available = first.credits
        self._break = False
        async with self._changed:
            self.streams.append(record)
            self._changed.notify_all()

        # Tasks and answers go out from two places; gRPC takes one message at a time.
        writing = asyncio.Lock()
        riding: list[pb.TaskReport] = []  # answers that go out with the next task

        async def read() -> None:
            async for request in request_iterator:
                async with self._changed:
                    record.available += request.credits
                    record.credits.append(request.credits)
                    record.messages.append(request)
                    answers = [(c.task_token, self._complete(c)) for c in request.completed]
                    answers += [(f.task_token, self._fail(f)) for f in request.failed]
                    reports = [
                        pb.TaskReport(task_token=token, code=code.value[0], message=message)
                        for token, (code, message) in answers
                        if token not in self.unanswered
                    ]
                    record.reports.extend(reports)
                    if self.answers_with_tasks and request.credits and self.queue:
                        riding.extend(reports)
                        reports = []
                    self._changed.notify_all()
                if reports:  # answered before the next message is read, so before a half-close
                    async with writing:
                        await context.write(pb.StreamTasksResponse(reports=reports))
            async with self._changed:
                record.half_closed = True
                self._changed.notify_all()

        reader = asyncio.create_task(read())
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(
                        lambda: (
                            self._break
                            or (record.half_closed and not self._holds(record))
                            or (not record.half_closed and record.available > 0 and self.queue)
                        )
                    )
                    if self._break:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "the fake broke it")
                    if record.half_closed:
                        return
                    task = self.queue.pop(0)
                    record.available -= 1
                    record.sent.append(task.task_token)
                    answers, riding[:] = list(riding), []
                async with writing:
                    await context.write(pb.StreamTasksResponse(task=task, reports=answers))
        finally:
            reader.cancel()
            record.ended = True
            await self._note()

    def _holds(self, record: StreamRecord) -> bool:
        """Whether a half-closed stream stays open for the results of its tasks."""
        reported = self.completed.keys() | self.failed.keys()
        return self.hold_half_closed and not reported.issuperset(record.sent)

    async def HeartbeatTask(
        self, request: pb.HeartbeatTaskRequest, context: Context
    ) -> pb.HeartbeatTaskResponse:
        self.heartbeats.append(request.task_token)
        await self._note()
        if request.task_token in self.stale:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the lease moved on")
        return pb.HeartbeatTaskResponse(cancelled=request.task_token in self.cancelled)

    async def CompleteTask(
        self, request: pb.CompleteTaskRequest, context: Context
    ) -> pb.CompleteTaskResponse:
        self.calls.append(("CompleteTask", request.task_token))
        await self._note()
        await self.answer_calls.wait()
        code, message = self._complete(request)
        await self._note()
        if code != grpc.StatusCode.OK:
            await context.abort(code, message)
        return pb.CompleteTaskResponse()

    async def FailTask(self, request: pb.FailTaskRequest, context: Context) -> pb.FailTaskResponse:
        self.calls.append(("FailTask", request.task_token))
        await self._note()
        await self.answer_calls.wait()
        code, message = self._fail(request)
        await self._note()
        if code != grpc.StatusCode.OK:
            await context.abort(code, message)
        return pb.FailTaskResponse()

    # Results, from a call or a stream: the same result again is OK, another one is refused.

    def _complete(self, request: pb.CompleteTaskRequest) -> Status:
        token, output = request.task_token, json_format.MessageToDict(request.output)
        if token in self.refuse_output:
            return grpc.StatusCode.INVALID_ARGUMENT, "output: larger than 1 MiB"
        if token in self.moved_on:
            return MOVED_ON
        if token in self.failed or self.completed.setdefault(token, output) != output:
            return ANOTHER_RESULT
        return OK

    def _fail(self, request: pb.FailTaskRequest) -> Status:
        token = request.task_token
        if token in self.moved_on:
            return MOVED_ON
        if token in self.completed or self.failed.setdefault(token, request) != request:
            return ANOTHER_RESULT
        return OK

    async def PollTasks(
        self, request: pb.PollTasksRequest, context: Context
    ) -> pb.PollTasksResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the SDK streams")

    async def ListTaskQueues(
        self, request: pb.ListTaskQueuesRequest, context: Context
    ) -> pb.ListTaskQueuesResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the SDK does not list queues")


def task(token: str, task_type: str = "echo", **config: Any) -> pb.Task:
    message = pb.Task(
        task_token=token,
        task_type=task_type,
        workflow_id="run-1",
        step_id=token,
        attempt=1,
        idempotency_key=f"run-1/{token}",
    )
    message.config.update(config)
    return message


async def serve(service: FakeWorkerService) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    pb_grpc.add_WorkerServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"
