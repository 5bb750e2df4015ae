"""A worker spoken with the raw WorkerService stubs, as grpcurl or a hand-written client in
another language would: the server's side of task steps tested without any SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2

from sluice.client import Workflow, WorkflowClient
from sluice.client.errors import SluiceError, from_rpc_error
from sluice.v1 import worker_service_pb2 as wpb
from sluice.v1 import worker_service_pb2_grpc as wgrpc


def task_template(
    template_id: str = "remote",
    *,
    task_type: str = "echo",
    then: bool = True,
    **task_step: Any,
) -> dict[str, Any]:
    """A task step "work" (config {"text": params.text}), then (with `then`) a built-in
    transform step formatting the worker's `shout`."""
    steps: list[dict[str, Any]] = [
        {
            "id": "work",
            "type": "task",
            "taskType": task_type,
            "config": {"text": "{{ params.text }}"},
            **task_step,
        }
    ]
    if then:
        steps.append(
            {
                "id": "after",
                "type": "transform",
                "dependencies": ["work"],
                "config": {
                    "transformation": "format",
                    "format": "text",
                    "inputData": "{{ steps.work.shout }}",
                },
            }
        )
    return {
        "id": template_id,
        "name": template_id,
        "steps": steps,
        "params": [{"name": "text", "defaultValue": "hello"}],
    }


async def finished(client: WorkflowClient, run_id: str, timeout: float = 30) -> Workflow:
    """The run once it has ended (its watch ends with its terminal event)."""
    async with asyncio.timeout(timeout):
        async for _ in client.watch(run_id):
            pass
    return await client.get_workflow(run_id)


class RawWorker:
    """WorkerService calls with an optional bearer token; errors as the client's typed ones."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = wgrpc.WorkerServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> RawWorker:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, timeout: float = 30) -> Any:
        try:
            return await method(request, metadata=self.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def poll(
        self, *task_types: str, max_tasks: int = 1, wait: float = 10.0
    ) -> list[wpb.Task]:
        request = wpb.PollTasksRequest(
            task_types=task_types or ("echo",),
            max_tasks=max_tasks,
            wait=duration_pb2.Duration(seconds=int(wait), nanos=int(wait % 1 * 1e9)),
            worker_id="raw-test-worker",
        )
        response = await self._call(self.stub.PollTasks, request, timeout=wait + 30)
        return list(response.tasks)

    async def poll_one(self, *task_types: str, wait: float = 10.0) -> wpb.Task:
        tasks = await self.poll(*task_types, wait=wait)
        assert len(tasks) == 1, f"no task came within {wait}s"
        return tasks[0]

    async def complete(self, token: str, output: dict[str, Any] | None = None) -> None:
        request = wpb.CompleteTaskRequest(task_token=token)
        request.output.update(output or {})
        await self._call(self.stub.CompleteTask, request)

    async def fail(self, token: str, error: str, **extra: Any) -> None:
        await self._call(
            self.stub.FailTask, wpb.FailTaskRequest(task_token=token, error=error, **extra)
        )

    async def heartbeat(self, token: str) -> bool:
        response = await self._call(
            self.stub.HeartbeatTask, wpb.HeartbeatTaskRequest(task_token=token)
        )
        return bool(response.cancelled)

    async def queues(self) -> dict[str, wpb.TaskQueue]:
        response = await self._call(self.stub.ListTaskQueues, wpb.ListTaskQueuesRequest())
        return {q.task_type: q for q in response.queues}


class TaskStream:
    """One StreamTasks stream: grant credits, receive tasks, half-close or break it."""

    def __init__(self, worker: RawWorker, *task_types: str, credits: int) -> None:
        self._requests: asyncio.Queue[wpb.StreamTasksRequest | None] = asyncio.Queue()
        self._requests.put_nowait(
            wpb.StreamTasksRequest(
                task_types=task_types or ("echo",), worker_id="stream-test-worker", credits=credits
            )
        )
        self.call = worker.stub.StreamTasks(self._outgoing(), metadata=worker.metadata)

    async def _outgoing(self) -> AsyncIterator[wpb.StreamTasksRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    def grant(self, credits: int) -> None:
        self._requests.put_nowait(wpb.StreamTasksRequest(credits=credits))

    def report(
        self,
        completed: dict[str, dict[str, Any]] | None = None,
        failed: dict[str, str] | None = None,
        credits: int = 0,
    ) -> None:
        """Results on the stream (outputs, or errors, by task token), with credits."""
        request = wpb.StreamTasksRequest(credits=credits)
        for token, output in (completed or {}).items():
            request.completed.add(task_token=token).output.update(output)
        for token, error in (failed or {}).items():
            request.failed.add(task_token=token, error=error)
        self._requests.put_nowait(request)

    def half_close(self) -> None:
        self._requests.put_nowait(None)

    async def next_task(self, timeout: float = 10.0) -> wpb.Task:
        """The next task (answers that come first, or with it, are skipped)."""
        while not (response := await self.next_message(timeout)).HasField("task"):
            pass
        return response.task

    async def next_reports(self, timeout: float = 10.0) -> list[wpb.TaskReport]:
        """The answers to results reported on the stream, in the next message (a task there
        fails the test: grant no credit while waiting for answers)."""
        response = await self.next_message(timeout)
        assert not response.HasField("task"), "a task came where answers were expected"
        return list(response.reports)

    async def next_message(self, timeout: float = 10.0) -> wpb.StreamTasksResponse:
        """The next message, whatever it carries (a task, answers, or both)."""
        async with asyncio.timeout(timeout):
            response = await self.call.read()
        assert isinstance(response, wpb.StreamTasksResponse), "the stream ended"
        assert response.HasField("task") or response.reports, "an empty message"
        return response

    async def end(self, timeout: float = 10.0) -> grpc.StatusCode:
        """Read until the server ends the stream; its status."""
        async with asyncio.timeout(timeout):
            while await self.call.read() is not grpc.aio.EOF:
                pass
        return await self.call.code()

    def cancel(self) -> None:
        """Break the stream, as a worker that dies does."""
        self.call.cancel()


__all__ = ["RawWorker", "SluiceError", "TaskStream", "finished", "task_template"]
