"""A scripted WorkerService on a loopback port, for the worker SDK's tests of what the real
server cannot be made to do on cue: break a stream while tasks are held, refuse a heartbeat or
an output. It keeps the contract's rules that the SDK relies on (never more tasks than credits;
a half-closed stream ends with OK) and records every call.
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


@dataclass
class StreamRecord:
    """One StreamTasks call as the fake saw it."""

    task_types: list[str]
    worker_id: str
    credits: list[int] = field(default_factory=list)  # the first message's, then each grant
    sent: list[str] = field(default_factory=list)  # task tokens
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
        # Tokens whose heartbeats answer `cancelled`, or FAILED_PRECONDITION.
        self.cancelled: set[str] = set()
        self.stale: set[str] = set()
        # CompleteTask answers INVALID_ARGUMENT for these tokens.
        self.refuse_output: set[str] = set()
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

        async def read() -> None:
            async for request in request_iterator:
                async with self._changed:
                    record.available += request.credits
                    record.credits.append(request.credits)
                    self._changed.notify_all()
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
                            or record.half_closed
                            or (record.available > 0 and self.queue)
                        )
                    )
                    if self._break:
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "the fake broke it")
                    if record.half_closed:
                        return
                    task = self.queue.pop(0)
                    record.available -= 1
                    record.sent.append(task.task_token)
                await context.write(pb.StreamTasksResponse(task=task))
        finally:
            reader.cancel()
            record.ended = True
            await self._note()

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
        if request.task_token in self.refuse_output:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "output: larger than 1 MiB")
        self.completed[request.task_token] = json_format.MessageToDict(request.output)
        await self._note()
        return pb.CompleteTaskResponse()

    async def FailTask(self, request: pb.FailTaskRequest, context: Context) -> pb.FailTaskResponse:
        self.failed[request.task_token] = request
        await self._note()
        return pb.FailTaskResponse()

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
